"""The /ui pages as HTML: the rules list (with broken files at file:line), history and a
trace, dead letters; payload text always shown escaped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.server.app import create_app
from tests.server_helpers import admin_client, server_settings, write_rules
from tests.wait import wait_until

RULE = """
# kept comment
id: echo
description: Echo the title
trigger: memory
do:
  - log:
      message: "{{ memory.structured.title }}"
"""

BROKEN = """
id: broken
trigger: memory
do:
  - slack:
      txet: "typo"
"""

XSS = "<script>alert(1)</script>"


@pytest.fixture
def client(tmp_path: Path, store_target: str) -> Iterator[Any]:
    """The pages on each backend (history, stats and dead letters read the store)."""
    write_rules(tmp_path / "rules", RULE, "echo.yaml")
    write_rules(tmp_path / "rules", BROKEN, "broken.yaml")
    with admin_client(create_app(server_settings(tmp_path, db=store_target))) as client:
        yield client


def post_xss_memory(client: Any) -> str:
    body = {"id": "m-xss", "structured": {"title": XSS, "overview": XSS}, "transcript_segments": []}
    answer = client.post(
        "/webhook/memory?uid=user123",
        content=json.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    return str(client.get("/api/events").json()[0]["id"])


def test_rules_list_shows_rules_counts_and_errors_at_their_line(client: Any) -> None:
    page = client.get("/ui")
    assert page.status_code == 200
    assert 'href="/ui/rules/echo"' in page.text
    assert "Echo the title" in page.text
    assert "broken.yaml:5" in page.text or "broken.yaml:6" in page.text
    assert "txet" in page.text


def test_toggle_from_the_list_keeps_the_comment(client: Any, tmp_path: Path) -> None:
    fragment = client.post("/ui/rules/echo/toggle")
    assert fragment.status_code in (200, 201)
    text = (tmp_path / "rules" / "echo.yaml").read_text()
    assert "enabled: false" in text and "# kept comment" in text
    assert 'aria-checked="false"' in fragment.text


def test_history_and_trace_show_payload_text_escaped(client: Any) -> None:
    event_id = post_xss_memory(client)
    rows = client.get("/ui/history/rows").text
    assert f"/ui/events/{event_id}" in rows
    trace = client.get(f"/ui/events/{event_id}").text
    assert XSS not in trace
    assert "&lt;script&gt;" in trace or "\\u003cscript\\u003e" in trace
    assert "echo" in trace  # the rule's decision


def test_history_filters_by_rule(client: Any) -> None:
    post_xss_memory(client)
    assert "/ui/events/" in client.get("/ui/history/rows?rule=echo").text
    assert "/ui/events/" not in client.get("/ui/history/rows?rule=nothing").text


def test_dead_letter_retry_and_purge_from_the_page(client: Any) -> None:
    post_xss_memory(client)
    receiver = client.app.state.receiver
    wait_until(
        lambda: {a["status"] for a in client.get("/api/actions").json()} == {"delivered"},
        what="the actions to be delivered",
    )
    action_id = client.get("/api/actions").json()[0]["id"]
    receiver.store.submit(
        lambda db: db.execute(
            "UPDATE actions SET status = 'dead', last_error = ? WHERE id = ?", [XSS, action_id]
        )
    ).result()
    page = client.get("/ui/dead-letters").text
    assert f"/ui/dead-letters/{action_id}/retry" in page and XSS not in page
    retried = client.post(f"/ui/dead-letters/{action_id}/retry")
    assert "queued again" in retried.text
    assert action_id not in [a["id"] for a in client.get("/api/dead-letters").json()]


def test_new_rule_from_a_starter_opens_the_editor(client: Any, tmp_path: Path) -> None:
    answer = client.post(
        "/ui/rules/new",
        data={"starter": "blank", "id": "fresh-rule"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/rules/fresh-rule"
    assert (tmp_path / "rules" / "fresh-rule.yaml").exists()
    editor = client.get("/ui/rules/fresh-rule").text
    assert 'data-rule="fresh-rule"' in editor
    assert "<script>" not in editor.replace('<script src="', "")  # no inline script


def test_a_new_rules_id_cannot_carry_yaml_of_its_own(client: Any, tmp_path: Path) -> None:
    before = sorted(p.name for p in (tmp_path / "rules").iterdir())
    answer = client.post(
        "/ui/rules/new",
        data={"starter": "blank", "id": "x\ntrigger: memory\nenabled: false"},
        follow_redirects=False,
    )
    assert answer.status_code == 400
    assert "bad rule id" in answer.text
    assert sorted(p.name for p in (tmp_path / "rules").iterdir()) == before


def test_a_refused_list_action_shows_why_in_the_table(client: Any, tmp_path: Path) -> None:
    answer = client.post("/ui/rules/echo/rename", headers={"HX-Prompt": "../escape"})
    assert answer.status_code == 200  # htmx swaps it in: the reason is in the table
    assert 'class="notice"' in answer.text and "escape" in answer.text
    assert (tmp_path / "rules" / "echo.yaml").exists()
    gone = client.post("/ui/rules/nope/delete")
    assert "nope" in gone.text and 'class="notice"' in gone.text
