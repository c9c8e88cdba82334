"""The store's writer: group commit, savepoint isolation of a failing write, cancelled callers.

The `store` fixture (tests/conftest.py) runs each test on SQLite and on PostgreSQL; the
tests named `..._in_sqlite` are about SQLite's file, pragmas and locks alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.server.store import Db, Store

INSERT = (
    "INSERT INTO rejections (received_at, endpoint, uid, status, reason) "
    "VALUES (?, '/x', 'u', 400, ?)"
)


def insert(n: int, reason: str | None = None) -> Any:
    def write(db: Db) -> int:
        db.execute(INSERT, [n, str(n) if reason is None else reason])
        return n

    return write


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """For the tests about SQLite's file itself (pragmas, locks, per-thread readers)."""
    store = Store(str(tmp_path / "t.db"))
    yield store
    store.close()


def test_concurrent_writes_share_commits(store: Store) -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*(store.write(insert(n)) for n in range(300)))

    results = asyncio.run(main())
    assert results == list(range(300))
    assert store.query("SELECT COUNT(*) AS n FROM rejections")[0]["n"] == 300
    assert store.writes == 300
    assert store.commits < 300  # batched: fewer transactions than writes


def test_a_failing_write_does_not_spoil_its_batch(store: Store) -> None:
    def broken(db: Db) -> None:
        db.execute(INSERT, [1, "a"])
        raise ValueError("broken write")

    futures = [store.submit(insert(1)), store.submit(broken), store.submit(insert(2))]
    assert futures[0].result() == 1
    with pytest.raises(ValueError, match="broken write"):
        futures[1].result()
    assert futures[2].result() == 2
    reasons = [r["reason"] for r in store.query("SELECT reason FROM rejections ORDER BY id")]
    assert reasons == ["1", "2"]  # the broken write's own insert was rolled back


def test_data_survives_reopening(store_target: str) -> None:
    first = Store(store_target)
    first.write_now(insert(7))
    first.close()
    second = Store(store_target)  # the schema is made again over the data, which stays
    try:
        assert second.query("SELECT reason FROM rejections")[0]["reason"] == "7"
    finally:
        second.close()


def test_the_file_is_in_wal_mode_in_sqlite(sqlite_store: Store) -> None:
    assert sqlite_store.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_a_failed_statement_in_a_write_spoils_only_that_write(store: Store) -> None:
    """A statement the database refuses (here a NOT NULL column left out) fails its own
    write; PostgreSQL marks the whole transaction aborted on an error, so only the savepoint
    rolled back to lets the writes around it commit."""

    def refused(db: Db) -> None:
        db.execute("INSERT INTO rejections (received_at, endpoint, status) VALUES (1, '/x', 400)")

    futures = [store.submit(insert(1)), store.submit(refused), store.submit(insert(2))]
    assert futures[0].result(timeout=10) == 1
    with pytest.raises(Exception, match="(?i)not.null"):
        futures[1].result(timeout=10)
    assert futures[2].result(timeout=10) == 2
    assert [r["reason"] for r in store.query("SELECT reason FROM rejections ORDER BY id")] == [
        "1",
        "2",
    ]


def test_a_full_disk_fails_the_write_and_the_writer_keeps_going_in_sqlite(
    sqlite_store: Store,
) -> None:
    # SQLite rolls the whole transaction back on SQLITE_FULL, so the job's savepoint is gone
    store = sqlite_store
    pages = store.write_now(lambda db: db.execute("PRAGMA page_count").fetchone()[0])
    store.write_now(lambda db: db.execute(f"PRAGMA max_page_count = {pages}"))

    def big(db: Db) -> None:
        insert(1, "x" * 200_000)(db)

    with pytest.raises(sqlite3.OperationalError, match="full"):
        store.submit(big).result(timeout=5)
    store.write_now(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
    assert store.submit(insert(3)).result(timeout=5) == 3  # the writer is still alive
    assert [r["reason"] for r in store.query("SELECT reason FROM rejections")] == ["3"]


def test_a_batch_whose_transaction_cannot_begin_fails_its_callers_in_sqlite(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "t.db"))
    store._writer_db.conn.execute("PRAGMA busy_timeout = 100")
    other = sqlite3.connect(str(tmp_path / "t.db"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.submit(insert(1)).result(timeout=5)
        other.execute("ROLLBACK")
        assert store.submit(insert(2)).result(timeout=5) == 2
    finally:
        other.close()
        store.close()


def test_a_slow_read_leaves_the_loop_and_other_reads_free(store: Store) -> None:
    """A read held open (as a slow query would be) on a reader thread: meanwhile the loop
    runs, another read answers, and only then is the slow one let go. Were reads run on the
    loop, or one at a time, the quick read could not finish and `release.wait` would time out."""
    import threading

    store.write_now(insert(1))
    release = threading.Event()
    ticks = 0

    def slow(s: Store) -> list[dict]:
        if not release.wait(timeout=10):
            raise AssertionError("the quick read never finished while the slow one ran")
        return s.query("SELECT reason FROM rejections")

    def quick(s: Store) -> int:
        return s.query("SELECT COUNT(*) AS n FROM rejections")[0]["n"]

    async def main() -> tuple[list[dict], int]:
        nonlocal ticks
        held = asyncio.ensure_future(store.read(slow))
        for _ in range(3):  # the loop keeps turning
            await asyncio.sleep(0)
            ticks += 1
        count = await asyncio.wait_for(store.read(quick), timeout=5)
        assert not held.done()
        release.set()
        return await held, count

    rows, count = asyncio.run(main())
    assert ticks == 3
    assert count == 1
    assert rows == [{"reason": "1"}]


def test_each_thread_reads_through_its_own_connection_in_sqlite(sqlite_store: Store) -> None:
    import threading

    store = sqlite_store
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(store.read_db))
    thread.start()
    thread.join()
    assert seen[0] is not store.read_db
    assert store.read_db is store.read_db


def test_reads_in_postgresql_go_through_query_not_a_thread_connection(
    postgres_url: str,
) -> None:
    store = Store(postgres_url)
    try:
        with pytest.raises(TypeError, match="postgresql reads go through Store.query"):
            _ = store.read_db
    finally:
        store.close()


def test_a_lost_postgresql_connection_fails_its_batch_and_the_next_write_reconnects(
    postgres_url: str,
) -> None:
    """The server ending the writer's session (a restart, a failover): that batch fails,
    and the writer opens a new connection for the next one instead of failing forever."""
    store = Store(postgres_url)
    try:
        store.write_now(insert(1))
        (pid,) = store._writer_db.conn.execute("SELECT pg_backend_pid()").fetchone()
        (ended,) = store.query("SELECT pg_terminate_backend(?) AS ended", [pid])[0].values()
        assert ended is True
        with pytest.raises(Exception, match="(?i)terminat|connection|closed"):
            store.submit(insert(2)).result(timeout=10)
        assert store.submit(insert(3)).result(timeout=10) == 3
        assert [r["reason"] for r in store.query("SELECT reason FROM rejections ORDER BY id")] == [
            "1",
            "3",
        ]
    finally:
        store.close()
