"""The store in PostgreSQL (psycopg 3 and its pool): several receiver processes share one
database, so any of them may take any call, retry or outbox row.

The rest of the store speaks SQLite's SQL with `?` and `:name` marks; `translate` turns a
statement into psycopg's `%s` / `%(name)s` form (cached), and engine.server.store_dialect
holds the few fragments that differ otherwise. Reads take a connection from the pool; the
writer keeps its own (autocommit off by hand: BEGIN ... COMMIT around each group commit).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from engine.server.store_dialect import Dialect
from engine.server.store_schema import added_columns_for, schema_for

DIALECT = Dialect(
    name="postgresql",
    shared=True,
    # a \u0000 escape (a reason quoting payload text) is no jsonb text: made U+FFFD first
    decision_rows="jsonb_array_elements(CAST(replace({decisions}, '\\u0000', '\\ufffd') "
    "AS jsonb)) AS d(value)",
    decision_rule="(d.value ->> 'rule')",
    decision_matched="(d.value ->> 'matched') = 'true'",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    # never waits: a claim waiting in a batch could close a cycle with another receiver's
    # batch (held to commit, like every transaction-level lock)
    claim_lock="SELECT pg_try_advisory_xact_lock(1869441394, 1) AS got",  # 'omir', outbox
    lock_until_commit="SELECT pg_advisory_xact_lock(?)",
)
SCHEMA_LOCK = 0x6F6D6972  # an advisory lock: two receivers starting at once make it once
# the pool's most: reader threads, and a connection per session lock held (each live
# call holds its session's lock until its write commits: engine.server.shared_sessions)
POOL_SIZE = 32
CONNECT_TIMEOUT = 10  # seconds
# TCP keepalives: a connection to a database host that vanished (no FIN) fails in about a
# minute instead of hanging the writer thread for good
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
POOL_WAIT = 5.0  # seconds a lock waits for a free pool connection, then LockBusy (503)

# a quoted literal (kept, its % doubled), a ? mark, a :name mark (not a ::cast), or a %
_MARKS = re.compile(r"'[^']*'|\?|(?<![:\w]):([A-Za-z_]\w*)|%")


@lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """`sql` with SQLite's parameter marks in psycopg's form."""

    def mark(match: re.Match[str]) -> str:
        text = match.group(0)
        if text.startswith("'"):
            return text.replace("%", "%%")
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return f"%({match.group(1)})s"

    return _MARKS.sub(mark, sql)


# advisory locks take a 64-bit key: the name's hash (a collision only makes two sessions
# wait for each other)
_LOCK = "SELECT pg_advisory_lock(hashtextextended(%s, 0))"
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"


class LockBusy(TimeoutError):
    """Another receiver held a lock longer than this one would wait."""


def text_safe(params: Sequence[Any] | dict[str, Any]) -> Sequence[Any] | dict[str, Any]:
    """`params` with a NUL in any text replaced (U+FFFD): PostgreSQL's text cannot hold
    one, and SQLite's can, so rendered text (an error quoting a payload, a target) must
    not fail a write there that succeeds here (the webhook would be answered 503 again and
    again). uid and session id with a NUL are refused before (engine.server.receiver)."""
    values = params.values() if isinstance(params, dict) else params
    if not any(isinstance(v, str) and "\x00" in v for v in values):
        return params
    if isinstance(params, dict):
        return {k: _no_nul(v) for k, v in params.items()}
    return [_no_nul(v) for v in params]


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """`url` without its password (in its user part or a `password=` parameter), for logs
    and errors."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


class PgDb:
    """One connection, with the calls the store's writes use (engine.server.store.Db)."""

    Error = psycopg.Error

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        return self.conn.execute(translate(sql), text_safe(params))

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> Iterator[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(translate(sql), text_safe(params))
            rows = cursor.fetchall() if cursor.description else []
        return iter(rows)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | dict[str, Any]]) -> Any:
        with self.conn.cursor() as cursor:
            cursor.executemany(translate(sql), [text_safe(row) for row in rows])
            return cursor

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    @property
    def lost(self) -> bool:
        return self.conn.broken or self.conn.closed

    def begin(self) -> None:
        self.conn.execute("BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def connect(url: str) -> PgDb:
    conninfo = with_keepalives(url)
    return PgDb(psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT))


def with_keepalives(url: str) -> str:
    """`url` with TCP keepalives on, unless it sets them itself."""
    params = conninfo_to_dict(url)
    for name, value in KEEPALIVES.items():
        params.setdefault(name, value)
    return make_conninfo("", **params)


class PostgresBackend:
    dialect = DIALECT

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = shown_url(url)
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            with_keepalives(url),
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            # a connection the server dropped (a restart) is found out when taken, not by
            # the read or lock it was taken for
            check=ConnectionPool.check_connection,
            open=True,
            name="omi-rules",
        )

    def connect(self) -> PgDb:
        return connect(self.url)

    def create_schema(self, db: PgDb) -> None:
        """The tables and any column an older database lacks, under an advisory lock
        (CREATE TABLE IF NOT EXISTS races with itself in PostgreSQL)."""
        db.begin()
        try:
            db.execute("SELECT pg_advisory_xact_lock(?)", [SCHEMA_LOCK])
            for table, column, definition in added_columns_for("postgresql"):
                db.conn.execute(
                    f"ALTER TABLE IF EXISTS {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
                )
            for statement in schema_for("postgresql").split(";"):
                if statement.strip():
                    db.conn.execute(statement)
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return list(PgDb(conn).query(sql, params))

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Read lazily, through a server-side cursor (a long history is never held whole);
        the pool connection is held until the rows are read or the iterator dropped."""
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(name="omi_rules_rows", row_factory=dict_row) as cursor:
                cursor.itersize = 500
                cursor.execute(translate(sql), text_safe(params))
                yield from cursor

    def lock(self, name: str, wait: float) -> Callable[[], None] | None:
        """Hold the advisory lock `name` across every receiver of the database, on a pool
        connection, until the returned release is called (from any thread, once). With
        `wait` 0: None when another holds it; else waits up to `wait` seconds, then raises
        LockBusy."""
        try:
            conn = self.pool.getconn(timeout=min(max(wait, 1.0), POOL_WAIT))
        except PoolTimeout:  # every connection holds a lock or a read: the store is busy
            raise LockBusy(f"no connection free for {name!r}") from None
        try:
            if wait <= 0:
                got = conn.execute(_TRY_LOCK, [name]).fetchone()
                if not got or not got[0]:
                    self.pool.putconn(conn)
                    return None
            else:
                conn.execute(f"SET lock_timeout = {int(wait * 1000)}")
                try:
                    conn.execute(_LOCK, [name])
                finally:
                    conn.execute("RESET lock_timeout")  # the pool's next user has none
        except psycopg.errors.LockNotAvailable:
            self.pool.putconn(conn)
            raise LockBusy(f"{name!r} was held for {wait:g}s") from None
        except BaseException:
            conn.close()  # a connection's locks go with it
            self.pool.putconn(conn)
            raise
        released = threading.Lock()

        def release() -> None:
            if not released.acquire(blocking=False):
                return  # released already
            try:
                conn.execute(_UNLOCK, [name])
            except Exception:
                conn.close()  # its locks go with it
            finally:
                self.pool.putconn(conn)

        return release

    def close(self) -> None:
        self.pool.close()
