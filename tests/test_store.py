"""The store's writer: group commit, savepoint isolation of a failing write, cancelled callers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlite_utils

from engine.store import Store


@pytest.fixture
def store(tmp_path: Path):  # noqa: ANN201
    store = Store(str(tmp_path / "t.db"))
    yield store
    store.close()


def insert(n: int):  # noqa: ANN201
    def write(db: sqlite_utils.Database) -> int:
        db["rejections"].insert(
            {"received_at": n, "endpoint": "/x", "uid": "u", "status": 400, "reason": str(n)}
        )
        return n

    return write


def test_concurrent_writes_share_commits(store: Store) -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*(store.write(insert(n)) for n in range(300)))

    results = asyncio.run(main())
    assert results == list(range(300))
    assert store.query("SELECT COUNT(*) AS n FROM rejections")[0]["n"] == 300
    assert store.writes == 300
    assert store.commits < 300  # batched: fewer transactions than writes


def test_a_failing_write_does_not_spoil_its_batch(store: Store) -> None:
    def broken(db: sqlite_utils.Database) -> None:
        db["rejections"].insert({"received_at": 1, "endpoint": "/x", "status": 400, "reason": "a"})
        raise ValueError("broken write")

    futures = [store.submit(insert(1)), store.submit(broken), store.submit(insert(2))]
    assert futures[0].result() == 1
    with pytest.raises(ValueError, match="broken write"):
        futures[1].result()
    assert futures[2].result() == 2
    reasons = [r["reason"] for r in store.query("SELECT reason FROM rejections ORDER BY id")]
    assert reasons == ["1", "2"]  # the broken write's own insert was rolled back


def test_data_survives_reopening(tmp_path: Path) -> None:
    first = Store(str(tmp_path / "t.db"))
    first.write_now(insert(7))
    first.close()
    second = Store(str(tmp_path / "t.db"))
    try:
        assert second.query("SELECT reason FROM rejections")[0]["reason"] == "7"
        assert second.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    finally:
        second.close()
