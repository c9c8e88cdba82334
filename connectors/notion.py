"""Notion: create a page in a database (`POST /v1/pages`) with properties and body blocks.

Properties are `name: value` (text goes to the title property `title_property`, other text
to rich_text, true/false to checkbox, numbers to number, lists to multi_select) or
`name: {type: value}` for title, rich_text, select, multi_select, status, date, checkbox,
number, url, email and phone_number. Text over Notion's 2,000-character limit is split.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from connectors._http import HttpRequest, bearer, delivered, send_http
from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.errors import DeliveryError

NOTION_VERSION = "2022-06-28"
TEXT_LIMIT = 2000
MAX_CHILDREN = 100
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
    api_url: str = "https://api.notion.com"
    notion_version: str = NOTION_VERSION
    timeout: float = 15.0


def rich_text(text: Any) -> list[dict[str, Any]]:
    """Notion rich text, split into pieces of at most 2,000 characters."""
    text = "" if text is None else str(text)
    pieces = [text[i : i + TEXT_LIMIT] for i in range(0, len(text), TEXT_LIMIT)] or [""]
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
    number = float(str(value).strip())
    return int(number) if number.is_integer() else number


def _names(value: Any) -> list[dict[str, str]]:
    items = value if isinstance(value, list) else [p.strip() for p in str(value).split(",")]
    return [{"name": str(item)} for item in items if str(item)]


def _date(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    return {"start": str(value)} if value else None


PROPERTY_BUILDERS = {
    "title": lambda v: {"title": rich_text(v)},
    "rich_text": lambda v: {"rich_text": rich_text(v)},
    "select": lambda v: {"select": {"name": str(v)} if v else None},
    "status": lambda v: {"status": {"name": str(v)}},
    "multi_select": lambda v: {"multi_select": _names(v)},
    "date": lambda v: {"date": _date(v)},
    "checkbox": lambda v: {"checkbox": _flag(v)},
    "number": lambda v: {"number": _number(v)},
    "url": lambda v: {"url": str(v) or None},
    "email": lambda v: {"email": str(v) or None},
    "phone_number": lambda v: {"phone_number": str(v) or None},
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
        blocks.append({"object": "block", "type": kind, kind: {"rich_text": rich_text(text)}})
    return blocks[:MAX_CHILDREN]


class Notion(ConnectorBase):
    name = "notion"
    summary = "Create a page in a Notion database"
    Options = NotionOptions
    Request = HttpRequest

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
        properties = {
            name: property_value(name, value, options.title_property)
            for name, value in options.properties.items()
        }
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
        url = options.api_url.rstrip("/") + "/v1/pages"
        return HttpRequest("POST", url, headers=headers, json=payload, timeout=options.timeout)

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        try:
            return delivered(await send_http(request, env, self.name))
        except DeliveryError as exc:
            raise _with_notion_message(exc) from None


def _with_notion_message(exc: DeliveryError) -> DeliveryError:
    """Notion's error body is JSON: keep its code and message, not the raw text."""
    try:
        answer = msgspec.json.decode(exc.message)
    except msgspec.DecodeError:
        return exc
    if not isinstance(answer, dict) or "message" not in answer:
        return exc
    message = f"{answer.get('code', 'error')}: {answer['message']}"
    return DeliveryError(
        message,
        connector=exc.connector,
        status=exc.status,
        url=exc.url,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
    )


connector = Notion()
