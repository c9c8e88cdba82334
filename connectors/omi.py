"""Omi: talk back to Omi through its own API (a notification, a conversation, memories, an
action item), the way an Omi app or a personal Developer API key does.

Two of Omi's APIs, picked with `via`:

- `app` (an Omi app's Import API; secrets `OMI_APP_ID` and `OMI_APP_SECRET`): the user is a
  `uid` query parameter (the event's uid unless the action gives one), the app id is in the
  path, the app secret is the bearer token.
    POST /v2/integrations/{app_id}/notification?uid=&message=      (no body)
    POST /v2/integrations/{app_id}/user/conversations?uid=         {text, text_source, ...}
    POST /v2/integrations/{app_id}/user/memories?uid=              {text, text_source, memories}
- `dev` (the Developer API, a personal key `omi_dev_...` in secret `OMI_DEV_KEY`): the key
  names the user.
    POST /v1/dev/user/conversations      {text, text_source, ...}
    POST /v1/dev/user/memories           {content, tags, category, visibility}
    POST /v1/dev/user/memories/batch     {memories: [...]} (more than one; at most 25)
    POST /v1/dev/user/action-items       {description, completed, due_at}

Omi answers errors the FastAPI way, `{"detail": "..."}` (a list of problems for a body that
fails validation, 422); the notification endpoint answers 429 with Retry-After after 10 an
hour per user and app.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

import httpx
from msgspec import Struct

from connectors.http_kit import (
    MAX_ERROR_TEXT,
    HttpDestination,
    HttpRequest,
    bearer,
    delivered,
    error_text,
    json_answer,
    send_http,
)
from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.rules.templates import is_template

_PLACEHOLDER = re.compile(r"<secret:[A-Za-z0-9_.-]+>")

OMI_API = "https://api.omi.me"
API_URL_SECRET = "OMI_API_URL"
APP_ID_SECRET = "OMI_APP_ID"
APP_SECRET_SECRET = "OMI_APP_SECRET"
DEV_KEY_SECRET = "OMI_DEV_KEY"

Action = Literal["notification", "create_conversation", "create_memories", "create_action_item"]
Via = Literal["app", "dev"]

# which API each action may go through (the first is its default)
ROUTES: dict[str, tuple[Via, ...]] = {
    "notification": ("app",),
    "create_conversation": ("app", "dev"),
    "create_memories": ("app", "dev"),
    "create_action_item": ("dev",),
}
# the options that mean something for each action (the shared ones are always allowed)
ACTION_OPTIONS: dict[str, frozenset[str]] = {
    "notification": frozenset({"message"}),
    "create_conversation": frozenset(
        {"text", "text_source", "text_source_spec", "started_at", "finished_at", "language"}
        | {"geolocation"}
    ),
    "create_memories": frozenset({"text", "text_source", "text_source_spec", "memories"}),
    "create_action_item": frozenset({"description", "due_at", "completed"}),
}
TEXT_SOURCES = {
    "create_conversation": ("audio_transcript", "message", "other_text"),
    "create_memories": ("email", "social_post", "other"),
}
DEV_TEXT_LIMIT = 500  # characters of a Developer API memory or action item
DEV_CONVERSATION_LIMIT = 100_000
DEV_MEMORY_BATCH = 25


class OmiMemory(Struct, forbid_unknown_fields=True, omit_defaults=True):
    content: str
    tags: list[str] = []
    category: str | None = None  # Developer API only: interesting, system, manual
    visibility: str | None = None  # Developer API only: private (Omi's default) or public


class OmiOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    action: Action
    via: Via | None = None
    uid: str | None = None  # via app: default the event's uid
    message: str = ""
    text: str = ""
    text_source: str | None = None
    text_source_spec: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    language: str | None = None
    geolocation: dict[str, Any] | None = None
    memories: list[str | OmiMemory] = []
    description: str = ""
    due_at: str | None = None
    completed: bool = False
    app_id: str | None = None  # default: secret OMI_APP_ID
    app_secret: str | None = None  # default: secret OMI_APP_SECRET
    dev_key: str | None = None  # default: secret OMI_DEV_KEY
    api_url: str | None = None  # default: secret OMI_API_URL, else https://api.omi.me
    timeout: float = 15.0


SHARED_OPTIONS = frozenset(
    {"action", "via", "app_id", "app_secret", "dev_key", "api_url", "timeout", "uid"}
)


def route(options: OmiOptions) -> Via:
    return options.via or ROUTES[options.action][0]


_DEFAULTS = OmiOptions(action="notification")


def _given(options: OmiOptions) -> set[str]:
    """The options set to something other than their default."""
    return {
        name
        for name in OmiOptions.__struct_fields__
        if getattr(options, name) != getattr(_DEFAULTS, name)
    }


def _filled(name: str, value: str) -> str:
    """`value` stripped; a required text that rendered empty is an error, not a blank call."""
    text = value.strip()
    if not text:
        raise ValueError(f"{name} rendered empty: nothing to send")
    return text


def _memory(item: str | OmiMemory) -> OmiMemory:
    return OmiMemory(content=item) if isinstance(item, str) else item


def _clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _geolocation(value: dict[str, Any]) -> dict[str, Any]:
    """Omi's Geolocation: latitude and longitude as numbers (a template renders text)."""
    located = dict(value)
    for key in ("latitude", "longitude"):
        if key not in located:
            raise ValueError(f"geolocation needs latitude and longitude, not {sorted(value)}")
        try:
            located[key] = float(located[key])
        except (TypeError, ValueError):
            raise ValueError(f"geolocation {key} {located[key]!r} is not a number") from None
    return located


class Omi(HttpDestination, ConnectorBase[OmiOptions, HttpRequest]):
    name = "omi"
    summary = "Talk back to Omi: a notification, a conversation, memories or an action item"
    Options = OmiOptions
    Request = HttpRequest
    default_urls = (OMI_API,)

    def validate(self, options: OmiOptions) -> list[tuple[str, str]]:
        action, via = options.action, route(options)
        if via not in ROUTES[action]:
            other = "the Developer API (via: dev)" if via == "app" else "an app (via: app)"
            return [("via", f"{action} goes through {other} only")]
        problems = [
            (name, f"{name} is not an option of action {action}")
            for name in sorted(_given(options) - SHARED_OPTIONS - ACTION_OPTIONS[action])
        ]
        if via == "dev" and options.uid is not None:
            problems.append(("uid", "via dev the key names the user: give no uid"))
        required = {
            "notification": ("message", options.message),
            "create_conversation": ("text", options.text),
            "create_action_item": ("description", options.description),
        }
        if action in required and not required[action][1].strip():
            name = required[action][0]
            problems.append((name, f"{action} needs {name}"))
        if action == "create_memories":
            problems.extend(self._memory_problems(options, via))
        sources = TEXT_SOURCES.get(action)
        source = options.text_source
        if sources and source and not is_template(source) and source not in sources:
            problems.append(("text_source", f"{source!r} is not one of {', '.join(sources)}"))
        return problems

    def _memory_problems(self, options: OmiOptions, via: Via) -> list[tuple[str, str]]:
        if via == "dev":
            if options.text or options.text_source or options.text_source_spec:
                return [("text", "via dev Omi does not extract memories from text: give memories")]
            if not options.memories:
                return [("memories", "create_memories via dev needs memories")]
            if len(options.memories) > DEV_MEMORY_BATCH:
                return [("memories", f"at most {DEV_MEMORY_BATCH} memories in one action")]
            return []
        if not options.text.strip() and not options.memories:
            return [("", "create_memories needs text (Omi extracts memories) or memories")]
        extra = [
            name
            for item in options.memories
            for name in ("category", "visibility")
            if getattr(_memory(item), name) is not None
        ]
        if extra:
            return [("memories", f"{extra[0]} is a Developer API field (via: dev)")]
        return []

    def required_secrets(self, options: OmiOptions) -> set[str]:
        if route(options) == "dev":
            return set() if options.dev_key else {DEV_KEY_SECRET}
        needed = set() if options.app_id else {APP_ID_SECRET}
        return needed | (set() if options.app_secret else {APP_SECRET_SECRET})

    def render(self, options: OmiOptions, env: RenderEnv) -> HttpRequest:
        base = options.api_url or (
            env.secret(API_URL_SECRET) if env.has_secret(API_URL_SECRET) else OMI_API
        )
        base = base.strip().rstrip("/")
        if route(options) == "dev":
            token = options.dev_key or env.secret(DEV_KEY_SECRET)
            path, body = self._dev_call(options)
            return HttpRequest(
                "POST", base + path, headers=bearer(token), json=body, timeout=options.timeout
            )
        app_id = (options.app_id or env.secret(APP_ID_SECRET)).strip()
        secret = options.app_secret or env.secret(APP_SECRET_SECRET)
        uid = (options.uid if options.uid is not None else env.uid).strip()
        if not uid:
            raise ValueError("no uid to send to: the event has none, and the action gives none")
        # a dry-run's `<secret:OMI_APP_ID>` (an unset secret) stays readable; anything
        # else, payload text shaped like a placeholder included, is one quoted path part
        path_id = app_id if _PLACEHOLDER.fullmatch(app_id) else quote(app_id, safe="")
        url = f"{base}/v2/integrations/{path_id}"
        if options.action == "notification":
            # Omi reads uid and message from the query; the request has no body
            query = {"uid": uid, "message": _filled("message", options.message)}
            return HttpRequest(
                "POST",
                url + "/notification",
                headers=bearer(secret),
                query=query,
                timeout=options.timeout,
            )
        if options.action == "create_conversation":
            path, body = "/user/conversations", _conversation(options, limit=None)
        else:
            path, body = "/user/memories", _import_memories(options)
        return HttpRequest(
            "POST",
            url + path,
            headers=bearer(secret),
            query={"uid": uid},
            json=body,
            timeout=options.timeout,
        )

    def _dev_call(self, options: OmiOptions) -> tuple[str, dict[str, Any]]:
        if options.action == "create_conversation":
            return "/v1/dev/user/conversations", _conversation(options, DEV_CONVERSATION_LIMIT)
        if options.action == "create_action_item":
            item: dict[str, Any] = {
                "description": _clip(_filled("description", options.description), DEV_TEXT_LIMIT),
                "completed": options.completed,
            }
            if options.due_at:
                item["due_at"] = options.due_at
            return "/v1/dev/user/action-items", item
        memories = [_dev_memory(_memory(item)) for item in options.memories]
        memories = [memory for memory in memories if memory["content"]]
        if not memories:
            raise ValueError("every memory rendered empty: nothing to create")
        if len(memories) == 1:
            return "/v1/dev/user/memories", memories[0]
        return "/v1/dev/user/memories/batch", {"memories": memories}

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        return delivered(await send_http(request, env, self.name, describe=omi_error))


def _conversation(options: OmiOptions, limit: int | None) -> dict[str, Any]:
    """Omi's ExternalIntegrationCreateConversation (the Developer API takes the same)."""
    text = _filled("text", options.text)
    body: dict[str, Any] = {"text": _clip(text, limit) if limit else text}
    for name in ("text_source", "text_source_spec", "started_at", "finished_at", "language"):
        value = getattr(options, name)
        if value:
            body[name] = value
    if options.geolocation:
        body["geolocation"] = _geolocation(options.geolocation)
    return body


def _import_memories(options: OmiOptions) -> dict[str, Any]:
    """Omi's ExternalIntegrationCreateMemory: text to extract from, and/or explicit memories
    (`text` is always sent: Omi's model requires the key, empty when memories are given)."""
    body: dict[str, Any] = {"text": options.text.strip()}
    if options.text_source:
        body["text_source"] = options.text_source
    if options.text_source_spec:
        body["text_source_spec"] = options.text_source_spec
    memories = [_memory(item) for item in options.memories]
    explicit = [
        {"content": memory.content.strip(), "tags": memory.tags}
        for memory in memories
        if memory.content.strip()
    ]
    if explicit:
        body["memories"] = explicit
    if not body["text"] and not explicit:
        raise ValueError("text and every memory rendered empty: nothing to create")
    return body


def _dev_memory(memory: OmiMemory) -> dict[str, Any]:
    item: dict[str, Any] = {
        "content": _clip(memory.content.strip(), DEV_TEXT_LIMIT),
        "tags": memory.tags,
    }
    if memory.category:
        item["category"] = memory.category
    if memory.visibility:
        item["visibility"] = memory.visibility
    return item


def omi_error(response: httpx.Response) -> str:
    """Omi's FastAPI error body: `detail` as text, or its validation problems joined."""
    answer = json_answer(response)
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if isinstance(detail, str):
        return detail[:MAX_ERROR_TEXT]
    if isinstance(detail, list) and detail:
        problems = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", []))
                problems.append(
                    f"{where}: {item.get('msg', '')}" if where else str(item.get("msg"))
                )
            else:
                problems.append(str(item))
        return "; ".join(problems)[:MAX_ERROR_TEXT]
    return error_text(response)


connector = Omi()
