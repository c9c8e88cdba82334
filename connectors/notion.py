"""Notion: create a page in a database (`POST /v1/pages`) with properties and body blocks.

Properties are `name: value` (text goes to the title property `title_property`, other text
to rich_text, true/false to checkbox, numbers to number, lists to multi_select) or
`name: {type: value}` for title, rich_text, select, multi_select, status, date, checkbox,
number, url, email and phone_number. Text over Notion's 2,000-character limit is split.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from msgspec import Struct

from connectors.http_kit import (
    MAX_ERROR_TEXT,
    RETRYABLE_STATUS,
    HttpDestination,
    HttpRequest,
    bearer,
    delivered,
    error_text,
    json_answer,
    probe_http,
    send_http,
)
from engine.connector import ConnectorBase, Delivered, Probe, RenderEnv, SendEnv
from engine.errors import SecretError

NOTION_API = "https://api.notion.com"
NOTION_VERSION = "2022-06-28"
TEXT_LIMIT = 2000
MAX_CHILDREN = 100
MAX_RICH_TEXT = 100  # pieces in one rich_text array
# 409 conflict_error: "a data collision... try again"; Notion's other retryable codes
# (rate_limited, internal_server_error, service_unavailable...) come with 429 and 5xx
NOTION_RETRYABLE_STATUS = RETRYABLE_STATUS | {409}
PROPERTY_TYPES = frozenset(
    {
        "title",
        "rich_text",
        "select",
        "multi_select",
        "status",
        "date",
        "checkbox",
        "number",
        "url",
        "email",
        "phone_number",
    }
)


class NotionOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    token: str
    database_id: str
    properties: dict[str, Any] = {}
    body: str | list[str] | None = None
    title_property: str = "Name"
    api_url: str | None = None  # default: secret NOTION_API_URL, else https://api.notion.com
    notion_version: str = NOTION_VERSION
    timeout: float = 15.0


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, as Notion counts (an emoji counts two)."""
    pieces: list[str] = []
    while text:
        end = min(len(text), limit)
        while _utf16_length(text[:end]) > limit:
            end -= (_utf16_length(text[:end]) - limit + 1) // 2 or 1
        pieces.append(text[:end])
        text = text[end:]
    return pieces


def rich_text(text: Any) -> list[dict[str, Any]]:
    """Notion rich text: pieces of at most 2,000 characters, at most 100 of them."""
    text = "" if text is None else str(text)
    pieces = split_text(text)[:MAX_RICH_TEXT]
    return [{"type": "text", "text": {"content": piece}} for piece in pieces]


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _number(value: Any) -> float | int | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def _names(value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    names = (str(item).strip() for item in items if item is not None)
    return [{"name": name} for name in names if name]


def _text_or_none(value: Any) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _named(value: Any) -> dict[str, str] | None:
    name = _text_or_none(value)
    return {"name": name} if name else None


def _date(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    return {"start": str(value)} if value else None


PROPERTY_BUILDERS = {
    "title": lambda v: {"title": rich_text(v)},
    "rich_text": lambda v: {"rich_text": rich_text(v)},
    "select": lambda v: {"select": _named(v)},
    "status": lambda v: {"status": _named(v)},
    "multi_select": lambda v: {"multi_select": _names(v)},
    "date": lambda v: {"date": _date(v)},
    "checkbox": lambda v: {"checkbox": _flag(v)},
    "number": lambda v: {"number": _number(v)},
    "url": lambda v: {"url": _text_or_none(v)},
    "email": lambda v: {"email": _text_or_none(v)},
    "phone_number": lambda v: {"phone_number": _text_or_none(v)},
}


def property_value(name: str, value: Any, title_property: str) -> dict[str, Any]:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in PROPERTY_TYPES:
        ((kind, inner),) = value.items()
        return PROPERTY_BUILDERS[kind](inner)
    if isinstance(value, bool):
        return PROPERTY_BUILDERS["checkbox"](value)
    if isinstance(value, int | float):
        return PROPERTY_BUILDERS["number"](value)
    if isinstance(value, list):
        return PROPERTY_BUILDERS["multi_select"](value)
    kind = "title" if name == title_property else "rich_text"
    return PROPERTY_BUILDERS[kind](value)


def body_blocks(body: str | list[str] | None) -> list[dict[str, Any]]:
    """Paragraphs, or bulleted items for lines that start with "- " or "* "."""
    if body is None:
        return []
    lines = body.split("\n") if isinstance(body, str) else body
    blocks = []
    for line in lines:
        text = str(line).rstrip()
        if not text.strip():
            continue
        kind = "paragraph"
        if text.lstrip()[:2] in ("- ", "* "):
            kind, text = "bulleted_list_item", text.lstrip()[2:]
        blocks.append(_block(kind, text))
    if len(blocks) > MAX_CHILDREN:  # Notion takes 100 blocks when creating a page
        left_out = len(blocks) - MAX_CHILDREN + 1
        note = f"… {left_out} more lines not included (Notion takes {MAX_CHILDREN} blocks)"
        blocks = blocks[: MAX_CHILDREN - 1] + [_block("paragraph", note)]
    return blocks


def _block(kind: str, text: str) -> dict[str, Any]:
    return {"object": "block", "type": kind, kind: {"rich_text": rich_text(text)}}


class Notion(HttpDestination, ConnectorBase[NotionOptions, HttpRequest]):
    name = "notion"
    summary = "Create a page in a Notion database"
    Options = NotionOptions
    Request = HttpRequest
    default_urls = (NOTION_API,)

    def validate(self, options: NotionOptions) -> list[tuple[str, str]]:
        problems = []
        for name, value in options.properties.items():
            if isinstance(value, dict) and (
                len(value) != 1 or next(iter(value)) not in PROPERTY_TYPES
            ):
                kinds = ", ".join(sorted(PROPERTY_TYPES))
                problems.append(
                    ("properties", f"property {name!r}: give {{type: value}} with one of {kinds}")
                )
        return problems

    def render(self, options: NotionOptions, env: RenderEnv) -> HttpRequest:
        properties = {}
        for name, value in options.properties.items():
            try:
                properties[name] = property_value(name, value, options.title_property)
            except ValueError as exc:
                raise ValueError(f"property {name!r}: {exc}") from None
        payload: dict[str, Any] = {
            "parent": {"database_id": options.database_id},
            "properties": properties,
        }
        children = body_blocks(options.body)
        if children:
            payload["children"] = children
        headers = {
            **bearer(options.token),
            "Notion-Version": options.notion_version,
            "Content-Type": "application/json",
        }
        base = options.api_url or (
            env.secret("NOTION_API_URL") if env.has_secret("NOTION_API_URL") else NOTION_API
        )
        url = base.rstrip("/") + "/v1/pages"
        return HttpRequest("POST", url, headers=headers, json=payload, timeout=options.timeout)

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        response = await send_http(
            request, env, self.name, describe=notion_error, retryable_status=NOTION_RETRYABLE_STATUS
        )
        return delivered(response)

    async def probe(self, options: NotionOptions, env: SendEnv) -> Probe:
        """Reads the database (`GET /v1/databases/<id>`): token and id both checked."""
        base = options.api_url
        if not base:
            try:
                base = env.secret("NOTION_API_URL")
            except SecretError:
                base = NOTION_API
        headers = {**bearer(options.token), "Notion-Version": options.notion_version}
        database = quote(options.database_id.strip(), safe="")
        url = f"{base.rstrip('/')}/v1/databases/{database}"
        request = HttpRequest("GET", url, headers=headers, timeout=options.timeout)
        return await probe_http(request, env, self.name, describe=notion_error)


def notion_error(response: httpx.Response) -> str:
    """Notion's error body is JSON: keep its code and message, as "code: message"."""
    answer = json_answer(response)
    if not isinstance(answer, dict) or "message" not in answer:
        return error_text(response)
    return f"{answer.get('code', 'error')}: {answer['message']}"[:MAX_ERROR_TEXT]


connector = Notion()
