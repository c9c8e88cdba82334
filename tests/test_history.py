"""History read back from the store, through the CLI: `history` and `dry-run --captured`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.server import history
from engine.server.app import create_app
from engine.server.capture import insert_rows
from engine.server.store import Store
from tests.conftest import RULES_DIR, fixture_path
from tests.server_helpers import admin_client, server_settings
from tests.wait import wait_until


def capture_fixtures(tmp_path: Path, db: str | None = None) -> str:
    """The sample memories and transcript calls received by a server with the shipped
    rules, stored in `db` (a PostgreSQL URL, or a file; by default omi.db in `tmp_path`)."""
    settings = server_settings(tmp_path, rules=str(RULES_DIR), **({"db": db} if db else {}))
    with admin_client(create_app(settings)) as client:
        for name in ("memory-work.json", "memory-personal-discarded.json"):
            client.post(
                "/webhook/memory?uid=user123",
                content=fixture_path(name).read_bytes(),
                headers={"Content-Type": "application/json"},
            )
        for n in (1, 2, 3):
            client.post(
                "/webhook/transcript?uid=user123&session_id=s1",
                content=fixture_path(f"transcript-call-{n}.json").read_bytes(),
                headers={"Content-Type": "application/json"},
            )
        # every action settles: the log ones delivered, the others waiting on secrets
        wait_until(
            lambda: not {"pending", "in_flight"} & set(client.get("/health").json()["actions"]),
            what=lambda: f"actions to settle: {client.get('/health').json()['actions']}",
        )
    return settings.db


def test_history_shows_decisions_and_action_fates(tmp_path: Path, store_target: str) -> None:
    db = capture_fixtures(tmp_path, store_target)
    result = CliRunner().invoke(main, ["history", "--db", db, "--limit", "10"])
    assert result.exit_code == 0, result.output
    assert "memory uid user123 [processed]" in result.output
    assert "✔ log-memories" in result.output
    assert "· work-to-slack: secrets not set: SLACK_WEBHOOK_URL" in result.output
    assert "log-memories → log delivered after 1 attempt(s)" in result.output
    as_json = CliRunner().invoke(main, ["history", "--db", db, "--json", "--trigger", "memory"])
    events = [json.loads(line) for line in as_json.output.splitlines()]
    assert [e["payload"]["id"] for e in events] == ["memory_7c41e9", "memory_e05b72"]


def test_dry_run_captured_replays_stored_events(tmp_path: Path, store_target: str) -> None:
    db = capture_fixtures(tmp_path, store_target)
    result = CliRunner().invoke(
        main, ["dry-run", "--captured", "--db", db, "--rules", str(RULES_DIR), "--json"]
    )
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["trigger"] for r in reports] == ["memory"] * 2 + ["transcript"] * 3
    work = reports[0]
    matched = {m["rule"]: m for m in work["matched"]}
    assert matched["work-to-slack"]["actions"][0]["request"]["url"] == "<secret:SLACK_WEBHOOK_URL>"
    assert len(matched["action-items-to-notion"]["actions"]) == 2
    lights = [r for r in reports if any(m["rule"] == "lights-on" for m in r["matched"])]
    assert len(lights) == 1  # the stored calls replay as one session
    assert "replayed 5 captured event(s)" in result.output
    limited = CliRunner().invoke(
        main,
        ["dry-run", "--captured", "--db", db, "--limit", "1", "--rules", str(RULES_DIR), "--json"],
    )
    assert len([ln for ln in limited.output.splitlines() if ln.startswith("{")]) == 1


def test_history_without_a_database_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["history", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert "no database at" in result.output


def test_a_stored_audio_chunk_replays_with_what_its_stream_said() -> None:
    """`speaking` comes from the stream, not the chunk: kept in params like
    session_duration_s (a replay lost it, and a `speaking` condition decided otherwise)."""
    from engine.server.history import stored_event

    row = {
        "trigger": "audio",
        "body": bytes(32000),
        "uid": "u",
        "session_id": "s",
        "id": "e",
        "received_at": 0.0,
    }
    params = {"sample_rate": "16000", "session_id": "s", "session_duration_s": 12.0}
    for speaking in (True, False):
        event = stored_event({**row, "params": json.dumps({**params, "speaking": speaking})})
        assert event is not None
        assert event.doc["speaking"] is speaking and event.doc["session_duration_s"] == 12.0
    older = stored_event({**row, "params": json.dumps(params)})  # stored before it was kept
    assert older is not None and "speaking" not in older.doc


def test_rule_and_status_filters_find_an_event_older_than_a_page(store: Store) -> None:
    """The filters run in the query: 400 newer events that do not match do not hide it."""

    def event(number: int, decisions: list[dict[str, object]], status: str) -> dict:
        return {
            "id": f"e{number:04d}",
            "trigger": "memory",
            "uid": "u",
            "received_at": float(number),
            "body": b"{}",
            "status": status,
            "decisions": json.dumps(decisions),
        }

    rows = [event(0, [{"rule": "rare", "matched": True, "reason": ""}], "error")]
    rows += [
        event(n, [{"rule": "common", "matched": True, "reason": ""}], "processed")
        for n in range(1, 401)
    ]
    store.write_now(lambda db: insert_rows(db, "events", rows))
    assert [e["id"] for e in history.list_events(store, limit=100, fired="rare")] == ["e0000"]
    assert [e["id"] for e in history.list_events(store, limit=100, status="error")] == ["e0000"]
    assert history.list_events(store, limit=100, fired="nobody") == []
    assert len(history.list_events(store, limit=100, fired="common")) == 100


def test_a_nul_in_stored_text_breaks_no_query_and_no_write(store: Store) -> None:
    """PostgreSQL's text holds no NUL (SQLite's does): a decision's reason quoting one (as
    JSON, escaped) must not break the rule stats or the fired filter for every event, and
    a raw one in rendered text (an error, a target) must not fail the write."""
    decisions = json.dumps(
        [{"rule": "r", "matched": True, "reason": "said \x00"}, {"rule": "q", "matched": False}]
    )
    row = {
        "id": "e1",
        "trigger": "memory",
        "uid": "u",
        "received_at": 10.0,
        "body": b"{}",
        "status": "processed",
        "decisions": decisions,
        "response": "{}",
    }
    action = {
        "idem_key": "e1:0",
        "event_id": "e1",
        "rule_id": "r",
        "action_index": 0,
        "connector": "http",
        "target": "http:bad\x00host:80",
        "status": "error",
        "last_error": "template failed on 'a\x00b'",
        "created_at": 10.0,
        "updated_at": 10.0,
    }
    store.write_now(
        lambda db: (insert_rows(db, "events", [row]), insert_rows(db, "actions", [action]))
    )
    assert history.rule_stats(store, 0)["r"]["fired"] == 1
    assert [e["id"] for e in history.list_events(store, fired="r")] == ["e1"]
    assert history.list_events(store, fired="q") == []
    (error,) = store.query("SELECT last_error FROM actions")
    assert error["last_error"].startswith("template failed on 'a")


def test_a_nul_in_uid_or_session_id_is_refused(tmp_path: Path, store_target: str) -> None:
    with admin_client(create_app(server_settings(tmp_path, db=store_target))) as client:
        for query in ("uid=a%00b", "uid=a&session_id=s%00"):
            answer = client.post(f"/webhook/transcript?{query}", json=[])
            assert answer.status_code == 400, answer.text
            assert "NUL" in answer.json()["error"]
