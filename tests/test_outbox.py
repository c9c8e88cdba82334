"""Claiming from the outbox: per-target limits and breaker exclusions, in real SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from engine.server.outbox import IN_FLIGHT, PENDING, claim_due
from engine.server.store import Store


@pytest.fixture
def store(tmp_path: Path):
    store = Store(str(tmp_path / "t.db"))
    yield store
    store.close()


def add(
    store: Store, target: str | None, count: int, status: str = PENDING, connector: str = "http"
) -> None:
    def write(db) -> None:
        db.execute(
            "INSERT OR IGNORE INTO events (id, trigger, uid, received_at, body, status) "
            "VALUES ('e', 'memory', 'u', 0, x'', 'done')"
        )
        start = db.execute("SELECT COUNT(*) FROM actions").fetchone()[0]
        for n in range(start, start + count):
            db.execute(
                "INSERT INTO actions (idem_key, event_id, rule_id, action_index, connector, "
                "target, request, status, next_attempt_at, created_at, updated_at) "
                "VALUES (?, 'e', 'r', ?, ?, ?, '{}', ?, ?, 0, 0)",
                [f"k{n}", n, connector, target, status, n],
            )

    store.write_now(write)


def claim(store: Store, **kwargs) -> Counter[str]:
    due = asyncio.run(claim_due(store, 1e9, 100, **kwargs))
    return Counter(action.target for action in due)


def test_no_target_gets_more_than_its_share_of_workers(store: Store) -> None:
    add(store, "http:slow:80", 40)
    add(store, "http:slow:80", 1, status=IN_FLIGHT)  # already being sent: counts
    add(store, "log", 3)
    add(store, "http:fast:443", 2)
    assert claim(store, per_target=4) == {"http:slow:80": 3, "log": 3, "http:fast:443": 2}
    assert claim(store, per_target=4) == {}  # every target is at its limit now


def test_open_targets_are_skipped_and_half_open_ones_get_one_probe(store: Store) -> None:
    add(store, "http:down:80", 5)
    add(store, "http:probe:80", 5)
    add(store, "log", 1)
    claimed = claim(store, per_target=4, blocked=["http:down:80"], single=["http:probe:80"])
    assert claimed == {"http:probe:80": 1, "log": 1}


def test_an_ordered_connectors_target_gets_one_action_at_a_time_oldest_first(
    store: Store,
) -> None:
    """Chunks of one recording were appended by up to workers_per_target workers at once,
    so a WAV could hold them out of order."""
    add(store, "record@recordings/u/a.wav", 5, connector="record")
    add(store, "record@recordings/u/b.wav", 5, connector="record")
    first = asyncio.run(claim_due(store, 1e9, 100, per_target=4, ordered=["record"]))
    assert sorted((a.target, a.idem_key) for a in first) == [
        ("record@recordings/u/a.wav", "k0"),
        ("record@recordings/u/b.wav", "k5"),
    ]
    assert claim(store, per_target=4, ordered=["record"]) == {}  # each file's one is in flight


def test_an_old_database_gains_the_target_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE actions (id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, "
        "event_id TEXT NOT NULL, rule_id TEXT NOT NULL, action_index INTEGER NOT NULL, "
        "item_index INTEGER, connector TEXT NOT NULL, request TEXT, status TEXT NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, "
        "last_status INTEGER, last_error TEXT, response TEXT, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO actions (idem_key, event_id, rule_id, action_index, connector, request, "
        "status, created_at, updated_at) VALUES ('k', 'e', 'r', 0, 'log', '{}', 'pending', 0, 0)"
    )
    conn.commit()
    conn.close()
    store = Store(str(path))
    try:
        (action,) = asyncio.run(claim_due(store, 1e9, 10, per_target=4))
        assert action.target == "log"  # an old row's target is its connector
    finally:
        store.close()
