"""The embedded store: events, the action outbox, rejections and live session state, in
SQLite (WAL).

All writes go through one writer thread that commits whatever is queued in a single
transaction (group commit): many concurrent webhooks share one fsync, and each caller's
future resolves only after its commit, so a 200 still means "on disk". Each thread reads
through its own connection; WAL lets them run while the writer commits. Code on the event
loop reads with `await store.read(fn)`: `fn(store)` runs on a reader thread, so a slow
query never stalls the loop (webhooks, /health) and two slow ones can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")
Write = Callable[[sqlite_utils.Database], Any]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    trigger TEXT NOT NULL,
    uid TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL,
    dedupe_key TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    decisions TEXT NOT NULL DEFAULT '[]',
    response TEXT,
    rules_version TEXT
);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE INDEX IF NOT EXISTS events_dedupe ON events(dedupe_key, received_at);
CREATE INDEX IF NOT EXISTS events_rules_version ON events(rules_version);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    idem_key TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL REFERENCES events(id),
    rule_id TEXT NOT NULL,
    action_index INTEGER NOT NULL,
    item_index INTEGER,
    connector TEXT NOT NULL,
    target TEXT,
    user_chosen INTEGER NOT NULL DEFAULT 0,
    request TEXT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT,
    response TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS actions_due ON actions(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS actions_event ON actions(event_id);
CREATE INDEX IF NOT EXISTS actions_target ON actions(status, target);
CREATE TABLE IF NOT EXISTS rule_versions (
    version TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    rules BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS live_sessions (
    number INTEGER PRIMARY KEY,
    uid TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    heard REAL NOT NULL,
    last_end REAL NOT NULL,
    calls INTEGER NOT NULL,
    waiting_until REAL,
    closed_at REAL,
    ended_by TEXT
);
CREATE TABLE IF NOT EXISTS live_segments (
    number INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL,
    segment BLOB,
    PRIMARY KEY (number, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS firings (
    rule_id TEXT NOT NULL,
    uid TEXT NOT NULL,
    session TEXT NOT NULL,
    fired_at REAL NOT NULL,
    PRIMARY KEY (rule_id, uid, session)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS firings_session ON firings(uid, session);
CREATE TABLE IF NOT EXISTS user_settings (
    uid TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    secret INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (uid, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    endpoint TEXT NOT NULL,
    uid TEXT,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0
);
"""

# columns added after the first release: (table, column, definition); a database made
# before them gets them on open (an old row's NULL target is read as its connector's name)
ADDED_COLUMNS = (
    ("actions", "target", "TEXT"),
    ("events", "rules_version", "TEXT"),
    ("actions", "user_chosen", "INTEGER NOT NULL DEFAULT 0"),
)

_STOP = object()
READ_THREADS = 4  # reads the API and the receiver may have running at once


def _fail(futures: list[Future[Any]], exc: BaseException) -> None:
    """Resolve every future not yet resolved with `exc` (its write did not commit)."""
    for future in futures:
        if future.done():
            continue
        if future.running() or future.set_running_or_notify_cancel():
            future.set_exception(exc)


BUSY_TIMEOUT = 5.0  # seconds the writer waits for another process's lock, then fails


def _connect(path: str, busy_timeout: float = BUSY_TIMEOUT) -> sqlite_utils.Database:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, check_same_thread=False, isolation_level=None, timeout=busy_timeout
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    return sqlite_utils.Database(conn)


def _create_schema(conn: sqlite3.Connection) -> None:
    """The tables, and any column an older database lacks (ALTER TABLE ... ADD COLUMN)."""
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for table, column, definition in ADDED_COLUMNS:
        if table not in tables:
            continue
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in columns:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    conn.executescript(SCHEMA)


class Store:
    def __init__(self, path: str) -> None:
        self.path = path
        self._writer_db = _connect(path)
        _create_schema(self._writer_db.conn)
        self._local = threading.local()  # this thread's read connection
        self._readers: list[sqlite_utils.Database] = []
        self._readers_lock = threading.Lock()
        self._read_pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="store-reader")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._thread.start()
        self.commits = 0  # how many transactions the writer made (group commit evidence)
        self.writes = 0

    # -- writing ----------------------------------------------------------------------
    def submit(self, write: Write) -> Future[Any]:
        """Queue `write(db)`; the future resolves after the transaction holding it commits."""
        future: Future[Any] = Future()
        self._queue.put((write, future))
        return future

    async def write(self, write: Write) -> Any:
        return await asyncio.wrap_future(self.submit(write))

    def write_now(self, write: Write) -> Any:
        """Blocking write, for command-line use."""
        return self.submit(write).result()

    def _write_loop(self) -> None:
        conn = self._writer_db.conn
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            jobs = [item for item in batch if item is not _STOP]
            if jobs:
                try:
                    self._run_batch(conn, jobs)
                except BaseException as exc:  # the writer must outlive a bad batch
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    _fail([future for _write, future in jobs], exc)
            if stop:
                return

    def _run_batch(self, conn: sqlite3.Connection, jobs: list[tuple[Write, Future[Any]]]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # e.g. another process held the lock past busy_timeout
            _fail([future for _write, future in jobs], exc)
            return
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        for index, (write, future) in enumerate(jobs):
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up (cancelled) before the write began
            conn.execute("SAVEPOINT job")
            try:
                result = write(self._writer_db)
            except BaseException as exc:  # handed to the caller's future
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error): the
                    # writes before this one are gone too, and the rest get no transaction
                    _fail([f for f, _r, _e in results], exc)
                    future.set_exception(exc)
                    rest = jobs[index + 1 :]
                    if rest:
                        self._run_batch(conn, rest)
                    return
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((future, None, exc))
                continue
            conn.execute("RELEASE job")
            results.append((future, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _fail([f for f, _r, _e in results], exc)
            return
        self.commits += 1
        self.writes += len(jobs)
        for future, result, error in results:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._writer_db.conn.close()
        self._read_pool.shutdown(wait=True)
        with self._readers_lock:
            for db in self._readers:
                db.conn.close()
            self._readers.clear()

    # -- reading ----------------------------------------------------------------------
    @property
    def read_db(self) -> sqlite_utils.Database:
        """The calling thread's read connection (opened on its first read)."""
        db: sqlite_utils.Database | None = getattr(self._local, "db", None)
        if db is None:
            db = _connect(self.path)
            with self._readers_lock:
                self._readers.append(db)
            self._local.db = db
        return db

    async def read(self, fn: Callable[[Store], T]) -> T:
        """`fn(self)` run on a reader thread: how code on the event loop reads."""
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, fn, self)

    def query(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        return list(self.read_db.query(sql, params))

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[dict[str, Any]]:
        return self.read_db.query(sql, params)
