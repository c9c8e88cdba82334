"""Notion against a loopback fake of `POST /v1/pages` that checks what Notion checks and
answers with Notion's error bodies."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from connectors.notion import connector as notion
from connectors.notion import split_text
from engine.errors import DeliveryError
from tests.connectors.helpers import render, send
from tests.connectors.services import bearer_token, serving
from tests.servers import Received, Reply, TargetServer

TOKEN = "secret_notion_integration_token"
DATABASE = "8a1b2c3d4e5f40718293a4b5c6d7e8f9"


def notion_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"object": "error", "status": status, "code": code, "message": message})


def rich_text_length(items: list[dict[str, Any]]) -> int:
    return sum(len(item["text"]["content"]) for item in items)


def fake_notion(request: Received) -> Reply:
    """The checks Notion makes before creating a page, with its answers."""
    if bearer_token(request) != TOKEN:
        return notion_error(401, "unauthorized", "API token is invalid.")
    if request.header("Notion-Version") != "2022-06-28":
        return notion_error(400, "missing_version", "Notion-Version header failed validation.")
    if (request.method, request.path) != ("POST", "/v1/pages"):
        return notion_error(400, "invalid_request_url", "Invalid request URL.")
    page = request.json()
    if page.get("parent", {}).get("database_id") != DATABASE:
        return notion_error(
            404,
            "object_not_found",
            f"Could not find database with ID: {page.get('parent')}. "
            "Make sure the relevant pages and databases are shared with your integration.",
        )
    for name, value in page["properties"].items():
        for kind in ("title", "rich_text"):
            for piece in value.get(kind, []):
                if len(piece["text"]["content"]) > 2000:
                    return notion_error(
                        400,
                        "validation_error",
                        f"body failed validation: body.properties.{name}.{kind}[0].text.content"
                        ".length should be ≤ `2000`.",
                    )
    answer = {"object": "page", "id": "59833787-2cf9-4fdf-8782-e53db20768a5", "url": "https://x"}
    return Reply(200, answer)


BASE = {"token": TOKEN, "database_id": DATABASE}


def test_creates_a_page_with_every_property_type_and_body_blocks() -> None:
    notes = "A long overview. " * 300  # 5,100 characters
    options = {
        **BASE,
        "properties": {
            "Name": "Launch review",
            "Notes": notes,
            "Category": {"select": "work"},
            "Tags": {"multi_select": "launch, beta , "},
            "People": ["Dana", "Lee"],
            "When": {"date": "2024-05-01T10:00:00+00:00"},
            "Span": {"date": {"start": "2024-05-01", "end": "2024-05-03"}},
            "Done": False,
            "Urgent": {"checkbox": "yes"},
            "Items": 3,
            "Minutes": {"number": "12.5"},
            "Recording": {"url": "https://example.com/r/1"},
            "Status": {"status": "In progress"},
        },
        "body": "We talked about the launch.\n\n- Ship the beta\n* Email Dana\nThat is all.",
    }
    with serving(fake_notion) as api:
        delivered = send(notion, render(notion, {**options, "api_url": api.url}))

    (request,) = api.received
    assert request.method == "POST" and request.path == "/v1/pages"
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Notion-Version") == "2022-06-28"
    assert request.header("Content-Type") == "application/json"
    page = request.json()
    assert page["parent"] == {"database_id": DATABASE}
    properties = page["properties"]
    assert properties["Name"] == {"title": [{"type": "text", "text": {"content": "Launch review"}}]}
    pieces = properties["Notes"]["rich_text"]
    assert [len(p["text"]["content"]) for p in pieces] == [2000, 2000, 1100]
    assert "".join(p["text"]["content"] for p in pieces) == notes
    assert properties["Category"] == {"select": {"name": "work"}}
    assert properties["Tags"] == {"multi_select": [{"name": "launch"}, {"name": "beta"}]}
    assert properties["People"] == {"multi_select": [{"name": "Dana"}, {"name": "Lee"}]}
    assert properties["When"] == {"date": {"start": "2024-05-01T10:00:00+00:00"}}
    assert properties["Span"] == {"date": {"start": "2024-05-01", "end": "2024-05-03"}}
    assert properties["Done"] == {"checkbox": False}
    assert properties["Urgent"] == {"checkbox": True}
    assert properties["Items"] == {"number": 3}
    assert properties["Minutes"] == {"number": 12.5}
    assert properties["Recording"] == {"url": "https://example.com/r/1"}
    assert properties["Status"] == {"status": {"name": "In progress"}}
    assert page["children"] == [
        paragraph("paragraph", "We talked about the launch."),
        paragraph("bulleted_list_item", "Ship the beta"),
        paragraph("bulleted_list_item", "Email Dana"),
        paragraph("paragraph", "That is all."),
    ]
    assert delivered.status == 200
    assert '"object": "page"' in delivered.response


def paragraph(kind: str, text: str) -> dict[str, Any]:
    rich = [{"type": "text", "text": {"content": text}}]
    return {"object": "block", "type": kind, kind: {"rich_text": rich}}


def test_a_long_body_paragraph_is_split_inside_its_block() -> None:
    text = "word " * 900  # 4,500 characters on one line
    with serving(fake_notion) as api:
        send(notion, render(notion, {**BASE, "body": [text], "api_url": api.url}))
    (block,) = api.received[0].json()["children"]
    pieces = block["paragraph"]["rich_text"]
    assert [len(p["text"]["content"]) for p in pieces] == [2000, 2000, 499]
    assert rich_text_length(pieces) == len(text.rstrip())


def test_empty_values_clear_properties_instead_of_writing_none(target: TargetServer) -> None:
    target.script(Reply(200, {"object": "page"}))
    properties = {
        "Name": "",
        "Link": {"url": None},
        "Email": {"email": ""},
        "Category": {"select": None},
        "Tags": {"multi_select": None},
        "Minutes": {"number": ""},
    }
    send(notion, render(notion, {**BASE, "properties": properties, "api_url": target.url}))
    assert target.received[0].json()["properties"] == {
        "Name": {"title": []},
        "Link": {"url": None},
        "Email": {"email": None},
        "Category": {"select": None},
        "Tags": {"multi_select": []},
        "Minutes": {"number": None},
    }


def test_text_is_split_as_notion_counts_it() -> None:
    """Notion counts UTF-16 units: an emoji is two, and is never cut in half."""
    pieces = split_text("a" * 1999 + "😀" + "b" * 10)
    assert pieces == ["a" * 1999, "😀" + "b" * 10]
    pieces = split_text("😀" * 2500)
    assert [len(p) for p in pieces] == [1000, 1000, 500]
    assert split_text("") == []


def test_a_database_not_shared_with_the_integration_is_not_found() -> None:
    with serving(fake_notion) as api:
        options = {**BASE, "database_id": "not-shared", "api_url": api.url}
        with pytest.raises(DeliveryError) as caught:
            send(notion, render(notion, {**options, "properties": {"Name": "x"}}))
    error = caught.value
    assert error.status == 404
    assert error.message.startswith("object_not_found: Could not find database with ID:")
    assert error.retryable is False


def test_notion_error_body_becomes_code_and_message(target: TargetServer) -> None:
    target.script(
        notion_error(400, "validation_error", "body.properties.Tags.multi_select should be ...")
    )
    with pytest.raises(DeliveryError) as caught:
        send(notion, render(notion, {**BASE, "api_url": target.url}))
    error = caught.value
    assert error.message == "validation_error: body.properties.Tags.multi_select should be ..."
    assert error.status == 400
    assert error.retryable is False
    assert error.connector == "notion"
    assert error.url == f"{target.url}/v1/pages"


def test_a_long_notion_error_keeps_its_code(target: TargetServer) -> None:
    """The body is parsed whole: cutting it first would leave broken JSON."""
    long_message = "body failed validation. Fix one: " + "x" * 900
    target.script(notion_error(400, "validation_error", long_message))
    with pytest.raises(DeliveryError) as caught:
        send(notion, render(notion, {**BASE, "api_url": target.url}))
    assert caught.value.message.startswith("validation_error: body failed validation. Fix one:")
    assert len(caught.value.message) == 500


def test_a_wrong_token_is_unauthorized() -> None:
    with serving(fake_notion) as api:
        options = {**BASE, "token": "secret_wrong", "api_url": api.url}
        with pytest.raises(DeliveryError) as caught:
            send(notion, render(notion, options))
    assert caught.value.message == "unauthorized: API token is invalid."
    assert caught.value.status == 401
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [(429, "rate_limited", 2.0), (409, "conflict_error", None), (503, "service_unavailable", None)],
)
def test_notions_transient_errors_are_retryable(
    target: TargetServer, status: int, code: str, retry_after: float | None
) -> None:
    reply = notion_error(status, code, "Try again later.")
    if retry_after is not None:
        reply.headers["Retry-After"] = "2"
    target.script(reply)
    with pytest.raises(DeliveryError) as caught:
        send(notion, render(notion, {**BASE, "api_url": target.url}))
    assert caught.value.message == f"{code}: Try again later."
    assert caught.value.retryable is True
    assert caught.value.retry_after == retry_after


def test_a_slow_notion_times_out_retryably(target: TargetServer) -> None:
    target.script(Reply(200, {"object": "page"}, delay=1.0))
    with pytest.raises(DeliveryError) as caught:
        send(notion, render(notion, {**BASE, "api_url": target.url, "timeout": 0.2}))
    assert caught.value.retryable is True
    assert "timed out" in caught.value.message


def test_validate_refuses_unknown_property_types() -> None:
    options = msgspec.convert({**BASE, "properties": {"X": {"relation": "abc"}}}, notion.Options)
    ((field, message),) = notion.validate(options)
    assert field == "properties"
    assert message.startswith("property 'X': give {type: value} with one of checkbox, date")


def test_a_number_that_is_not_a_number_fails_at_render() -> None:
    with pytest.raises(ValueError) as caught:
        render(notion, {**BASE, "properties": {"Minutes": {"number": "about ten"}}})
    assert str(caught.value) == "property 'Minutes': 'about ten' is not a number"


def test_a_body_over_100_blocks_says_what_was_left_out(target: TargetServer) -> None:
    target.script(Reply(200, {"object": "page"}))
    lines = [f"- item {n}" for n in range(130)]
    send(notion, render(notion, {**BASE, "body": lines, "api_url": target.url}))
    children = target.received[0].json()["children"]
    assert len(children) == 100
    assert children[98] == paragraph("bulleted_list_item", "item 98")
    assert children[99] == paragraph(
        "paragraph", "… 31 more lines not included (Notion takes 100 blocks)"
    )
