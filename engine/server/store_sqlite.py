"""The store in one SQLite file (WAL): the default, for one receiver process.

A connection is a sqlite-utils Database with the transaction steps the store's writer
uses (engine.server.store.Db). Writers of other processes (the CLI) wait for SQLite's lock
up to BUSY_TIMEOUT; one process at a time writes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.server.store_dialect import Dialect
from engine.server.store_schema import added_columns_for, schema_for

BUSY_TIMEOUT = 5.0  # seconds the writer waits for another process's lock, then fails

DIALECT = Dialect(
    name="sqlite",
    shared=False,
    decision_rows="json_each({decisions}) d",
    decision_rule="json_extract(d.value, '$.rule')",
    decision_matched="json_extract(d.value, '$.matched') = 1",
    skip_locked="",
    claim_lock="",
    lock_until_commit="",  # BEGIN IMMEDIATE holds the only write lock already
)


def _released() -> None:
    return None


class SqliteDb(sqlite_utils.Database):
    """One connection: sqlite-utils' `execute`/`query`, plus what the writer needs."""

    Error = sqlite3.Error

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | dict[str, Any]]) -> Any:
        return self.conn.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    lost = False  # a file connection is never closed by a server

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def connect(path: str, busy_timeout: float = BUSY_TIMEOUT) -> SqliteDb:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    return SqliteDb(conn)


class SqliteBackend:
    dialect = DIALECT

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()  # this thread's read connection
        self._readers: list[SqliteDb] = []
        self._lock = threading.Lock()

    def connect(self) -> SqliteDb:
        return connect(self.path)

    def create_schema(self, db: SqliteDb) -> None:
        """The tables, and any column an older database lacks (ALTER TABLE ADD COLUMN)."""
        conn = db.conn
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column, definition in added_columns_for("sqlite"):
            if table not in tables:
                continue
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        conn.executescript(schema_for("sqlite"))

    def reader(self) -> SqliteDb:
        """The calling thread's read connection (opened on its first read): WAL lets it
        read while the writer commits."""
        db: SqliteDb | None = getattr(self._local, "db", None)
        if db is None:
            db = self.connect()
            with self._lock:
                self._readers.append(db)
            self._local.db = db
        return db

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.reader().query(sql, params))

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Read lazily (a long history is never held whole)."""
        return self.reader().query(sql, params)

    def lock(self, name: str, wait: float) -> Callable[[], None] | None:
        """One process uses the file: its rules thread's order is the only lock needed."""
        return _released

    def close(self) -> None:
        with self._lock:
            for db in self._readers:
                db.conn.close()
            self._readers.clear()
