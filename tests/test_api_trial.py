"""web.api_trial: the live test on samples, captured events and pasted payloads, and the
backtest of an edit against the saved rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.editor_api import editor_client, post_memory


@pytest.fixture
def client(tmp_path: Path, store_target: str) -> Iterator[Any]:
    """The editor's trial API on each backend (backtests read the captured events)."""
    with editor_client(tmp_path, store_target) as client:
        yield client


def test_live_test_renders_requests_and_says_why_not(client: Any) -> None:
    text = client.get("/api/rules/work-log").json()["text"]
    fired = client.post(
        "/api/dry-run", json={"text": text, "source": {"sample": "memory-work.json"}}
    ).json()
    (report,) = fired["reports"]
    assert report["matched"][0]["rule"] == "work-log"
    assert (
        '"message":"work: Onboarding Guide Review"'
        in report["matched"][0]["actions"][0]["request"]["line"]
    )
    assert "memory.structured.title" in fired["variables"]
    assert fired["milliseconds"] > 0
    skipped = client.post(
        "/api/dry-run",
        json={"text": text, "source": {"sample": "memory-personal-discarded.json"}},
    ).json()
    assert skipped["reports"][0]["skipped"][0]["rule"] == "work-log"
    broken = client.post(
        "/api/dry-run",
        json={
            "text": text.replace("{{ memory", "{{ memory |"),
            "source": {"sample": "memory-work.json"},
        },
    ).json()
    assert broken["problems"] and broken["problems"][0]["line"] > 1


def test_live_test_on_a_captured_event_and_a_pasted_payload(client: Any) -> None:
    assert post_memory(client).status_code == 200
    event_id = client.get("/api/events").json()[0]["id"]
    text = client.get("/api/rules/work-log").json()["text"]
    captured = client.post("/api/dry-run", json={"text": text, "source": {"event_id": event_id}})
    assert captured.json()["reports"][0]["matched"][0]["rule"] == "work-log"
    pasted = client.post(
        "/api/dry-run",
        json={"text": text, "source": {"payload": {"structured": {"category": "work"}}}},
    ).json()
    assert pasted["reports"][0]["matched"][0]["rule"] == "work-log"
    wrong = client.post("/api/dry-run", json={"text": text, "source": {"payload": [1, 2]}})
    assert wrong.status_code == 400 and "payload" in wrong.json()["error"]
    none = client.post("/api/dry-run", json={"text": text, "source": {"event_id": "nope"}})
    assert none.status_code == 404


def test_backtest_compares_the_edit_with_the_saved_rule(client: Any) -> None:
    post_memory(client)
    post_memory(client, "memory-personal-discarded.json")
    text = client.get("/api/rules/work-log").json()["text"]
    wider = text.replace("equals: work", "not_equals: nothing")
    report = client.post("/api/backtest", json={"text": wider}).json()
    assert report["events"] == 2
    assert report["fired_before"] == 1 and report["fired_after"] == 2
    assert len(report["changes"]) == 1


def test_save_as_test_case_pins_what_the_rule_does(client: Any, tmp_path: Path) -> None:
    from engine.rule_tests import run_rule_tests

    saved = client.post(
        "/api/rules/work-log/cases",
        json={"name": "a work memory is logged", "source": {"sample": "memory-work.json"}},
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["file"] == "work-log.test.yaml"
    assert saved.json()["case"]["expect"]["fires"] is True
    run = run_rule_tests(tmp_path / "rules")
    assert [(r.name, r.passed) for r in run.results] == [("a work memory is logged", True)]
    again = client.post(
        "/api/rules/work-log/cases",
        json={"name": "a work memory is logged", "source": {"sample": "memory-work.json"}},
    )
    assert again.status_code == 400 and "a work memory is logged" in again.json()["error"]
