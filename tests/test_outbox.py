"""Claiming from the outbox: per-target limits and breaker exclusions, on SQLite and on
PostgreSQL (the `store` fixture); and, on PostgreSQL, two receivers' stores claiming from
one outbox at once: leases, and no action claimed twice."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from engine.server.outbox import (
    IN_FLIGHT,
    PENDING,
    claim_due,
    counts_by_status,
    mark_delivered,
    mark_failed,
    renew_leases,
)
from engine.server.store import Db, Store


def add(
    store: Store, target: str | None, count: int, status: str = PENDING, connector: str = "http"
) -> None:
    def write(db) -> None:
        db.execute(
            "INSERT INTO events (id, trigger, uid, received_at, body, status) "
            "VALUES ('e', 'memory', 'u', 0, ?, 'done') ON CONFLICT DO NOTHING",
            [b""],
        )
        start = next(db.query("SELECT COUNT(*) AS n FROM actions"))["n"]
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


def run_raw(target: str, statements: list[str]) -> None:
    """`statements` on a connection of the database's own driver, as an older release
    left the database (before the store opens it)."""
    if target.startswith("postgresql://"):
        with psycopg.connect(target, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)
        return
    conn = sqlite3.connect(target)
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def test_an_old_database_gains_the_target_column(store_target: str) -> None:
    old_actions = (
        "CREATE TABLE actions (id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, "
        "event_id TEXT NOT NULL, rule_id TEXT NOT NULL, action_index INTEGER NOT NULL, "
        "item_index INTEGER, connector TEXT NOT NULL, request TEXT, status TEXT NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0, "
        "last_status INTEGER, last_error TEXT, response TEXT, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL)"
    )
    if store_target.startswith("postgresql://"):
        old_actions = old_actions.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
    run_raw(
        store_target,
        [
            old_actions,
            "INSERT INTO actions (idem_key, event_id, rule_id, action_index, connector, "
            "request, status, created_at, updated_at) "
            "VALUES ('k', 'e', 'r', 0, 'log', '{}', 'pending', 0, 0)",
        ],
    )
    store = Store(store_target)
    try:
        (action,) = asyncio.run(claim_due(store, 1e9, 10, per_target=4))
        assert action.target == "log"  # an old row's target is its connector
    finally:
        store.close()


# -- two receivers on one PostgreSQL database ---------------------------------------------


@pytest.fixture
def two_stores(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    """Two Stores on one database, each with its own writer connection: what two receiver
    processes have."""
    first, second = Store(postgres_url), Store(postgres_url)
    yield first, second
    first.close()
    second.close()


def add_spread(store: Store, count: int) -> None:
    """`count` due actions, each for a target of its own (so no per-target cap holds any
    back: every one can be claimed)."""
    for n in range(count):
        add(store, f"http:t{n}:80", 1)


def test_two_receivers_claiming_at_once_never_take_one_action_twice(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    add_spread(first, 300)

    async def claimer(store: Store, taken: list[int]) -> None:
        for _round in range(1000):  # bounded; ends when nothing is left to claim
            due = await claim_due(store, 1e9, 7)
            taken += [action.id for action in due]
            if not due:
                left = await store.read(
                    lambda s: s.query(
                        "SELECT COUNT(*) AS n FROM actions WHERE status = ?", [PENDING]
                    )
                )
                if left[0]["n"] == 0:
                    return

    async def both() -> tuple[list[int], list[int]]:
        by_first: list[int] = []
        by_second: list[int] = []
        # two claimers per store: their claims share a transaction (group commit) too
        await asyncio.gather(
            claimer(first, by_first),
            claimer(second, by_second),
            claimer(first, by_first),
            claimer(second, by_second),
        )
        return by_first, by_second

    by_first, by_second = asyncio.run(both())
    assert len(by_first) == len(set(by_first)) and len(by_second) == len(set(by_second))
    assert not set(by_first) & set(by_second)
    every = {row["id"] for row in first.query("SELECT id FROM actions")}
    assert set(by_first) | set(by_second) == every and len(every) == 300
    assert counts_by_status(first) == {IN_FLIGHT: 300}


def test_a_receiver_claims_nothing_while_another_is_claiming_and_does_not_wait(
    two_stores: tuple[Store, Store],
) -> None:
    """The first store's claim is held uncommitted (a write queued after it in the same
    transaction waits): the second's claim answers at once with nothing (the receivers'
    claims take turns, so per-target caps hold across them), and once the first's
    commits, the second claims everything else and none of the first's."""
    first, second = two_stores
    add_spread(first, 20)
    gate, holding, let_go = threading.Event(), threading.Event(), threading.Event()

    def hold(_db: Db) -> None:
        holding.set()
        if not let_go.wait(timeout=30):
            raise AssertionError("never let go")

    async def main() -> tuple[list[int], list[int]]:
        first.submit(lambda _db: gate.wait(timeout=30))  # the claim and hold queue behind it
        claiming = asyncio.create_task(claim_due(first, 1e9, 5))
        await asyncio.sleep(0)  # the task runs up to its store.write: the claim is queued
        held = first.submit(hold)
        gate.set()
        assert await asyncio.to_thread(holding.wait, 30)
        try:
            during = await asyncio.wait_for(claim_due(second, 1e9, 100), timeout=20)
        finally:
            let_go.set()
        assert during == []
        by_first = await claiming
        held.result(timeout=10)
        by_second = await claim_due(second, 1e9, 100)
        return [a.id for a in by_first], [a.id for a in by_second]

    by_first, by_second = asyncio.run(main())
    assert len(by_first) == 5 and len(by_second) == 15
    assert set(by_first) | set(by_second) == {
        r["id"] for r in first.query("SELECT id FROM actions")
    }


def test_a_lapsed_lease_lets_another_receiver_take_the_action_and_not_before(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    add(first, "log", 1)
    (mine,) = asyncio.run(claim_due(first, 100.0, 10, lease=0.2))
    assert asyncio.run(claim_due(second, 100.1, 10)) == []  # leased to the first still
    assert asyncio.run(claim_due(second, 100.2, 10)) == []  # up to its last instant
    (taken,) = asyncio.run(claim_due(second, 100.3, 10))
    assert (taken.id, taken.idem_key) == (mine.id, mine.idem_key)
    assert asyncio.run(claim_due(first, 100.4, 10)) == []  # now leased to the second


def test_a_renewed_lease_keeps_the_action_with_its_receiver(
    two_stores: tuple[Store, Store],
) -> None:
    first, second = two_stores
    add(first, "log", 1)
    (mine,) = asyncio.run(claim_due(first, 100.0, 10, lease=0.2))
    assert asyncio.run(renew_leases(first, [mine.id], until=101.0, owner="")) == 1
    assert asyncio.run(claim_due(second, 100.3, 10)) == []  # past the first lease: renewed
    assert asyncio.run(claim_due(second, 101.0, 10)) == []
    (taken,) = asyncio.run(claim_due(second, 101.1, 10))  # the renewal ran out too
    assert taken.id == mine.id


def test_a_receiver_cannot_renew_a_lease_another_one_took_over(
    two_stores: tuple[Store, Store],
) -> None:
    """A stalled receiver whose lease lapsed wakes up: its renewal must not take the action
    back from the receiver now sending it (only that one's renewals count)."""
    first, second = two_stores
    add(first, "log", 1)
    (mine,) = asyncio.run(claim_due(first, 100.0, 10, lease=0.2, owner="first"))
    (taken,) = asyncio.run(claim_due(second, 100.3, 10, lease=0.2, owner="second"))
    assert taken.id == mine.id
    assert asyncio.run(renew_leases(first, [mine.id], until=200.0, owner="first")) == 0
    assert asyncio.run(renew_leases(second, [mine.id], until=200.0, owner="second")) == 1


def test_a_late_outcome_from_a_receiver_whose_lease_lapsed_is_not_written(
    two_stores: tuple[Store, Store],
) -> None:
    """The first receiver stalled past its lease; the second took the action over and
    delivered it. The first's late failure must not make the delivered action dead (or
    pending again: a third send)."""
    first, second = two_stores
    add(first, "log", 1)
    (mine,) = asyncio.run(claim_due(first, 100.0, 10, lease=0.2, owner="first"))
    (taken,) = asyncio.run(claim_due(second, 100.3, 10, lease=0.2, owner="second"))
    asyncio.run(mark_delivered(second, taken, now=100.4, status=200, response="ok"))
    asyncio.run(mark_failed(first, mine, now=100.5, error="late", status=None, retry_at=None))
    (row,) = first.query("SELECT status, attempts, last_error FROM actions")
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 1, None)
