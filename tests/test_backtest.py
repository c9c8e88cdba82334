"""Backtest over events a real server captured: against another rules folder, against what
was recorded at receive time, for one candidate rule, and through `omi-rules backtest`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from secrets import token_hex

import pytest
from click.testing import CliRunner

from engine.backtest import BacktestReport, backtest, backtest_captured
from engine.cli import main
from engine.rules.compiled import RuleSet
from engine.rules.loader import load_rules
from engine.secrets import Secrets
from engine.server import history
from engine.server.store import Store
from tests.conftest import RULES_DIR
from tests.postgres import PostgresServer
from tests.test_history import capture_fixtures


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def captured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Store, str]]:
    """Two memories and three transcript calls received by the server with the shipped
    rules and no secrets, stored in SQLite or in PostgreSQL (once per module each);
    yields the store and the server's data folder."""
    tmp_path = tmp_path_factory.mktemp("captured")
    db = None
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        db = server.new_database(f"backtest_{token_hex(4)}")
    store = Store(capture_fixtures(tmp_path, db))
    try:
        yield store, str(tmp_path / "data")
    finally:
        store.close()


def edited_rules(tmp_path: Path) -> Path:
    """The shipped rules with two edits: log-memories only logs work memories, and
    remind-me's notification reads differently."""
    folder = tmp_path / "edited"
    shutil.copytree(RULES_DIR, folder)
    log = folder / "log-everything.yaml"
    log.write_text(
        log.read_text().replace(
            "  trigger: memory\n  do:",
            "  trigger: memory\n  when:\n    - path: $.structured.category\n      equals: work\n"
            "  do:",
            1,
        )
    )
    reminders = folder / "reminders.yaml"
    reminders.write_text(reminders.read_text().replace("Noted: ", "Reminder: "))
    assert load_rules(folder).errors == []
    return folder


def memory_ids(store: Store) -> dict[str, str]:
    """Stored event id of each captured memory, by the memory's own id."""
    return {e.doc["id"]: e.id for e in history.captured_events(store) if e.trigger == "memory"}


def call_two(store: Store) -> str:
    return [e.id for e in history.captured_events(store) if e.trigger == "transcript"][1]


def test_the_same_rules_change_nothing_against_what_was_recorded(
    captured: tuple[Store, str],
) -> None:
    store, data_dir = captured
    report = backtest_captured(store, load_rules(RULES_DIR), secrets=Secrets(), data_dir=data_dir)
    assert report.events == 5
    # log-memories on 2 memories, log-transcripts on 3 calls
    assert (report.fired_before, report.fired_after) == (5, 5)
    assert report.changes == []
    assert report.headline().endswith("no event changes")


def test_edited_rules_change_exactly_the_events_whose_result_changed(
    captured: tuple[Store, str], tmp_path: Path
) -> None:
    store, data_dir = captured
    report = backtest_captured(
        store, load_rules(edited_rules(tmp_path)), secrets=Secrets(), data_dir=data_dir
    )
    memories = memory_ids(store)
    assert [(c.event_id, c.rule, c.before, c.after) for c in report.changes] == [
        (
            memories["memory_e05b72"],
            "log-memories",
            "fired",
            "skipped: when[0]: $.structured.category is 'other', not equal to 'work'",
        ),
        (call_two(store), "remind-me", "fired", "fired"),
    ]
    reminder = report.changes[1]
    assert reminder.requests_before[0] == {
        "connector": "notify",
        "request": {"message": "Noted: water the plants tonight"},
    }
    assert [r["connector"] for r in reminder.requests_before] == ["notify", "log"]
    assert reminder.requests_after[0]["request"]["message"].startswith("Reminder: ")
    assert report.events_changed == 2
    assert report.headline() == (
        "Over the last 5 captured event(s) this version fires on 4; "
        "the saved version fired on 5; these 2 events change"
    )


def test_against_another_folder(captured: tuple[Store, str], tmp_path: Path) -> None:
    store, data_dir = captured
    events = list(history.captured_events(store))
    report = backtest(
        events,
        load_rules(RULES_DIR),
        load_rules(edited_rules(tmp_path)),
        secrets=Secrets(),
        data_dir=data_dir,
    )
    assert [(c.rule, c.before, c.after) for c in report.changes] == [
        (
            "log-memories",
            "fired",
            "skipped: when[0]: $.structured.category is 'other', not equal to 'work'",
        ),
        ("remind-me", "fired", "fired"),
    ]


def test_a_rule_whose_secrets_are_set_now_fires_where_it_was_skipped(
    captured: tuple[Store, str],
) -> None:
    store, data_dir = captured
    secrets = Secrets({"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x"})
    report = backtest_captured(
        store, load_rules(RULES_DIR), secrets=secrets, data_dir=data_dir, only_rule="work-to-slack"
    )
    (change,) = report.changes
    assert change.event_id == memory_ids(store)["memory_7c41e9"]
    assert change.before == "skipped: secrets not set: SLACK_WEBHOOK_URL"
    assert change.after == "fired"
    assert change.requests_after[0]["request"]["url"] == "<secret:SLACK_WEBHOOK_URL>"
    assert (report.fired_before, report.fired_after) == (0, 1)


def test_one_candidate_rule_against_the_saved_version(
    captured: tuple[Store, str], tmp_path: Path
) -> None:
    """The editor's case: `after` holds only the rule being edited."""
    store, data_dir = captured
    candidate = load_rules(edited_rules(tmp_path)).get("log-memories")
    assert candidate is not None
    events = list(history.captured_events(store))
    report = backtest(
        events,
        load_rules(RULES_DIR),
        RuleSet(rules=[candidate]),
        secrets=Secrets(),
        only_rule="log-memories",
        data_dir=data_dir,
    )
    assert [(c.rule, c.before) for c in report.changes] == [("log-memories", "fired")]
    assert (report.fired_before, report.fired_after) == (2, 1)


def test_limit_takes_the_newest_events(captured: tuple[Store, str], tmp_path: Path) -> None:
    store, data_dir = captured
    seen: list[tuple[int, int]] = []
    report = backtest_captured(
        store,
        load_rules(RULES_DIR),
        secrets=Secrets(),
        limit=2,
        data_dir=data_dir,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert report.events == 2
    assert seen == [(1, 2), (2, 2)]
    # the last two are transcript calls 2 and 3, replayed as one session from call 2
    assert report.changes == []


def run_backtest(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["backtest", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_text_and_json(
    captured: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, data_dir = captured
    monkeypatch.setenv("OMI_RULES_DATA_DIR", data_dir)
    db = store.target
    edited = str(edited_rules(tmp_path))
    code, out, _err = run_backtest("--rules", edited, "--db", db)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == (
        "Over the last 5 captured event(s) this version fires on 4; "
        "the saved version fired on 5; these 2 events change"
    )
    assert "  remind-me: fired → fired" in lines
    assert '    - notify: {"message": "Noted: water the plants tonight"}' in lines
    assert '    + notify: {"message": "Reminder: water the plants tonight"}' in lines
    code, out, _err = run_backtest("--rules", edited, "--db", db, "--json", "--since", "1h")
    assert code == 0
    report = json.loads(out)
    assert BacktestReport(**report).events_changed == 2
    code, out, _err = run_backtest(
        "--rules", edited, "--against", str(RULES_DIR), "--db", db, "--limit", "1"
    )
    assert code == 0
    # the newest event alone: transcript call 3, the start of a session when replayed alone
    assert out.startswith(
        f"Over the last 1 captured event(s) this version fires on 1; the rules in {RULES_DIR} "
        "fired on 1; this event changes\n"
    )
    assert "  remind-me: fired → fired" in out.splitlines()


def test_cli_refuses_against_with_saved(tmp_path: Path) -> None:
    code, _out, err = run_backtest("--against", str(RULES_DIR), "--saved")
    assert code == 2
    assert "give --against DIR or --saved, not both" in err
