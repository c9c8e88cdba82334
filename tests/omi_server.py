"""A loopback fake of Omi's API for the `omi` connector: the Import API of one app and the
Developer API of one key, checking what Omi's backend checks (routers/integration.py and
routers/developer.py) and answering with its FastAPI bodies.

`FakeOmi().respond` is a `serving(...)` function; what Omi accepted is kept in
`notifications`, `conversations`, `memories` and `action_items`, each item with its uid.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.connectors.services import bearer_token
from tests.servers import Received, Reply

APP_ID = "01JD8K3Z9QX7W2M4N6P8R0T2V4"
APP_SECRET = "sk_0f1e2d3c4b5a69788796a5b4c3d2e1f0"
DEV_KEY = "omi_dev_5b0e8c1f7a2d4e6b9c3f1a8d2e7b4c6f"
DEV_UID = "dev-key-owner"
MISSING_AUTH = "Missing or invalid Authorization header. Must be 'Bearer API_KEY'"
CONVERSATION_SOURCES = {"audio_transcript", "message", "other_text"}
MEMORY_SOURCES = {"email", "social_post", "other"}
MEMORY_CATEGORIES = {"interesting", "system", "manual"}


def detail(status: int, text: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"detail": text}, headers=headers or {})


def invalid(*problems: tuple[tuple[str | int, ...], str]) -> Reply:
    """FastAPI's 422: a list of {loc, msg, type}."""
    items = [{"type": "value_error", "loc": list(loc), "msg": msg} for loc, msg in problems]
    return Reply(422, {"detail": items})


@dataclass
class FakeOmi:
    enabled_uids: set[str] = field(default_factory=lambda: {"user-1"})
    notifications_per_hour: int = 10
    notifications: list[dict[str, str]] = field(default_factory=list)
    conversations: list[dict[str, Any]] = field(default_factory=list)
    memories: list[dict[str, Any]] = field(default_factory=list)
    action_items: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, request: Received) -> Reply:
        parts = urlsplit(request.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        path = unquote(parts.path)
        if request.method != "POST":
            return detail(405, "Method Not Allowed")
        with self._lock:
            if path.startswith("/v2/integrations/"):
                return self._app(request, path.split("/")[3:], query)
            if path.startswith("/v1/dev/user/"):
                return self._dev(request, path.removeprefix("/v1/dev/user/"))
        return detail(404, "Not Found")

    # the Import API of one app: /v2/integrations/{app_id}/...

    def _app(self, request: Received, parts: list[str], query: dict[str, str]) -> Reply:
        app_id, route = parts[0], "/".join(parts[1:])
        if route not in ("notification", "user/conversations", "user/memories"):
            return detail(404, "Not Found")
        required = ["uid", "message"] if route == "notification" else ["uid"]
        missing = [name for name in required if name not in query]
        if missing:
            return invalid(*((("query", name), "Field required") for name in missing))
        token = bearer_token(request)
        if token is None:
            return detail(401, MISSING_AUTH)
        if app_id != APP_ID or token != APP_SECRET:  # verify_api_key(app_id, key)
            return detail(403, "Invalid API key")
        uid = query["uid"]
        if uid not in self.enabled_uids:
            return detail(403, "App is not enabled for this user")
        if route == "notification":
            return self._notification(uid, query["message"])
        body = request.json()
        if route == "user/conversations":
            return self._conversation(uid, body)
        return self._import_memories(uid, body)

    def _notification(self, uid: str, message: str) -> Reply:
        sent = sum(1 for item in self.notifications if item["uid"] == uid)
        if sent >= self.notifications_per_hour:
            limit = self.notifications_per_hour
            return detail(
                429,
                f"Rate limit exceeded. Maximum {limit} notifications per hour.",
                {"Retry-After": "1800"},
            )
        self.notifications.append({"uid": uid, "message": message})
        return Reply(200, {"status": "Ok"})

    def _conversation(self, uid: str, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return invalid((("body", "text"), "Field required"))
        source = body.get("text_source", "audio_transcript")
        if source not in CONVERSATION_SOURCES:
            return invalid((("body", "text_source"), "Input should be 'audio_transcript', ..."))
        geolocation = body.get("geolocation")
        if geolocation is not None and not all(
            isinstance(geolocation.get(key), float) for key in ("latitude", "longitude")
        ):
            return invalid((("body", "geolocation"), "latitude and longitude are numbers"))
        self.conversations.append({"uid": uid, **body})
        return Reply(200, {})

    def _import_memories(self, uid: str, body: Any) -> Reply:
        if not isinstance(body, dict) or "text" not in body:  # Optional, but no default
            return invalid((("body", "text"), "Field required"))
        if body.get("text_source", "other") not in MEMORY_SOURCES:
            return invalid((("body", "text_source"), "Input should be 'email', ..."))
        memories = body.get("memories") or []
        if any(not isinstance(item.get("content"), str) for item in memories):
            return invalid((("body", "memories", 0, "content"), "Field required"))
        if not (body["text"] or "").strip() and not memories:
            return detail(
                422, "Either text or explicit memories(facts) are required and cannot be empty"
            )
        self.memories.append({"uid": uid, **body})
        return Reply(200, {})

    # the Developer API of one key: /v1/dev/user/...

    def _dev(self, request: Received, route: str) -> Reply:
        if bearer_token(request) != DEV_KEY:
            return detail(401, "Invalid API key")
        body = request.json()
        if route == "memories":
            problem = _dev_memory_problem(body, ("body",))
            if problem:
                return problem
            self.memories.append({"uid": DEV_UID, **body})
            return Reply(200, {"id": f"mem-{len(self.memories)}", **body})
        if route == "memories/batch":
            items = body.get("memories") or []
            if len(items) > 25:
                return invalid((("body", "memories"), "List should have at most 25 items"))
            for index, item in enumerate(items):
                problem = _dev_memory_problem(item, ("body", "memories", index))
                if problem:
                    return problem
            self.memories.extend({"uid": DEV_UID, **item} for item in items)
            return Reply(200, {"memories": items, "created_count": len(items)})
        if route == "action-items":
            description = body.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 500:
                return invalid((("body", "description"), "String should have 1 to 500 characters"))
            self.action_items.append({"uid": DEV_UID, **body})
            return Reply(200, {"id": "item-1", "completed": False, **body})
        if route == "conversations":
            return self._conversation(DEV_UID, body)
        return detail(404, "Not Found")


def _dev_memory_problem(item: Any, loc: tuple[str | int, ...]) -> Reply | None:
    content = item.get("content") if isinstance(item, dict) else None
    if not isinstance(content, str) or not 1 <= len(content) <= 500:
        return invalid(((*loc, "content"), "String should have 1 to 500 characters"))
    if item.get("category", "interesting") not in MEMORY_CATEGORIES:
        return invalid(((*loc, "category"), "Input should be 'interesting', 'system' or 'manual'"))
    return None
