"""Statuses are enums stored as the strings databases already hold."""

from __future__ import annotations

import sqlite3

from engine.server.statuses import UNFINISHED, ActionStatus, EventStatus


def test_statuses_keep_the_strings_existing_databases_hold() -> None:
    assert list(map(str, EventStatus)) == ["processed", "error", "duplicate"]
    assert list(map(str, ActionStatus)) == [
        "pending",
        "in_flight",
        "delivered",
        "dead",
        "inline",
        "error",
    ]
    assert UNFINISHED == ("pending", "in_flight")


def test_a_status_is_written_and_read_back_as_its_plain_string() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (status TEXT)")
    db.execute("INSERT INTO t VALUES (?)", (ActionStatus.IN_FLIGHT,))
    (stored,) = db.execute("SELECT status FROM t WHERE status = 'in_flight'").fetchone()
    assert type(stored) is str
    assert ActionStatus(stored) is ActionStatus.IN_FLIGHT
