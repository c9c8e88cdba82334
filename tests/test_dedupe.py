"""Dedupe key parts claimed in the store (engine.server.dedupe.claim_parts): two receivers'
stores on one database, each with its own writer connection, getting the same delivery at
once. On SQLite (two Stores on one file) and PostgreSQL through `store_target`; the
lock-wait case is PostgreSQL's alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from engine.server.dedupe import DedupeKey, RepeatOf, claim_parts
from engine.server.store import Db, Store
from tests.wait import wait_until

WINDOW = 10.0


@pytest.fixture
def two_stores(store_target: str) -> Iterator[tuple[Store, Store]]:
    first, second = Store(store_target), Store(store_target)
    yield first, second
    first.close()
    second.close()


def record(store: Store, event_id: str, key: DedupeKey, at: float) -> Future[Any]:
    """The event's write as engine.server.capture.write_event makes it: its key's parts
    claimed, then its row."""

    def write(db: Db) -> None:
        claim_parts(db, key, event_id, at, WINDOW)
        db.execute(
            "INSERT INTO events (id, trigger, uid, received_at, body, status, dedupe_key) "
            "VALUES (?, 'memory', 'u', ?, ?, 'processed', ?)",
            [event_id, at, b"{}", key.to_column()],
        )

    return store.submit(write)


def stored(store: Store) -> dict[str, str]:
    """part -> the event that holds it."""
    return {r["part"]: r["event_id"] for r in store.query("SELECT * FROM dedupe_parts")}


def events(store: Store) -> list[str]:
    return [r["id"] for r in store.query("SELECT id FROM events ORDER BY id")]


def test_of_two_receivers_writing_one_delivery_one_commits_the_other_is_its_repeat(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    winners: list[str] = []
    for n in range(40):
        key = DedupeKey((f"idem:{n}", f"memory:{n}"))
        a = record(first, f"a{n:02d}", key, 100.0)
        b = record(second, f"b{n:02d}", key, 100.0)
        outcomes: dict[str, BaseException | None] = {}
        for name, future in (("a", a), ("b", b)):
            error = future.exception(timeout=30)
            assert error is None or isinstance(error, RepeatOf), error
            outcomes[name] = error
        (winner,) = [name for name, error in outcomes.items() if error is None]
        (repeat,) = [error for error in outcomes.values() if error is not None]
        assert isinstance(repeat, RepeatOf)
        assert repeat.event_id == f"{winner}{n:02d}"
        winners.append(f"{winner}{n:02d}")
    assert events(first) == sorted(winners)  # the repeats' rows were rolled back
    assert set(stored(first).values()) == set(winners)
    assert len(stored(first)) == 80


def test_a_receiver_waits_for_the_other_ones_commit_then_is_its_repeat(
    postgres_url: str,
) -> None:
    """The first store's claim is held uncommitted; the second's insert of the same part
    waits on it (PostgreSQL's unique index), and once the first commits it is a repeat."""
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        holding, let_go = threading.Event(), threading.Event()

        def hold(_db: Db) -> None:
            holding.set()
            if not let_go.wait(timeout=30):
                raise AssertionError("never let go")

        key = DedupeKey(("idem:x",))
        gate = threading.Event()
        first.submit(lambda _db: gate.wait(timeout=30))  # the claim and hold share a batch
        claimed = record(first, "first", key, 100.0)
        held = first.submit(hold)
        gate.set()
        assert holding.wait(timeout=30)
        repeat = record(second, "second", key, 100.5)
        try:
            wait_until(
                lambda: (
                    first.query(
                        "SELECT COUNT(*) AS n FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )[0]["n"]
                    == 1
                ),
                what="the second store's insert to wait on the first's lock",
            )
            assert not repeat.done()
        finally:
            let_go.set()
        claimed.result(timeout=10)
        held.result(timeout=10)
        with pytest.raises(RepeatOf) as raised:
            repeat.result(timeout=10)
        assert raised.value.event_id == "first"
        assert events(first) == ["first"]
        assert stored(first) == {"idem:x": "first"}
    finally:
        first.close()
        second.close()


def test_a_part_older_than_the_window_may_be_taken_again(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    key = DedupeKey(("idem:y", "memory:y"))
    record(first, "old", key, 100.0).result(timeout=10)
    with pytest.raises(RepeatOf, match="a repeat of event old"):
        record(second, "inside", key, 100.0 + WINDOW).result(timeout=10)  # at its edge still
    record(second, "later", key, 100.0 + WINDOW + 0.5).result(timeout=10)
    assert stored(first) == {"idem:y": "later", "memory:y": "later"}
    assert events(first) == ["later", "old"]
    # a new part and a held one: a repeat, and the new part's claim is undone with it
    with pytest.raises(RepeatOf, match="a repeat of event later"):
        record(first, "again", DedupeKey(("new:z", "idem:y")), 111.0).result(timeout=10)
    assert "new:z" not in stored(first)
