"""The store: events, the action outbox, rejections, live session state and settings,
in SQLite (one file, WAL; the default) or PostgreSQL (several receivers share one
database). The backends (engine.server.store_sqlite, store_postgres) are chosen by the
target: a `postgresql://` URL or a file path. Everything else speaks through `Db`.

All writes go through one writer thread that commits whatever is queued in a single
transaction (group commit): many concurrent webhooks share one fsync, and each caller's
future resolves only after its commit, so a 200 still means "on disk". Reads run on
reader threads, each with its own connection (SQLite, WAL lets them run while the writer
commits) or one from the pool (PostgreSQL). Code on the event loop reads with
`await store.read(fn)`: `fn(store)` runs on a reader thread, so a slow query never stalls
the loop (webhooks, /health) and two slow ones can run side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from engine.server import store_postgres, store_sqlite
from engine.server.store_dialect import Dialect

T = TypeVar("T")
Params = Sequence[Any] | dict[str, Any]


class Db(Protocol):
    """A connection as a write sees it: SQLite's SQL with `?` or `:name` marks."""

    Error: type[Exception]

    def execute(self, sql: str, params: Params = ..., /) -> Any: ...
    def query(self, sql: str, params: Params = ..., /) -> Iterator[dict[str, Any]]: ...
    def executemany(self, sql: str, rows: Iterable[Params], /) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...
    @property
    def lost(self) -> bool: ...  # the server closed it (a PostgreSQL restart)
    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


class Backend(Protocol):
    dialect: Dialect
    path: str  # what to show of the target (a URL without its password)

    def connect(self) -> Any: ...  # a Db
    def create_schema(self, db: Any) -> None: ...
    def query(self, sql: str, params: Params) -> list[dict[str, Any]]: ...
    def rows(self, sql: str, params: Params) -> Iterator[dict[str, Any]]: ...
    def lock(self, name: str, wait: float) -> Callable[[], None] | None: ...
    def close(self) -> None: ...


Write = Callable[[Db], Any]

_STOP = object()
READ_THREADS = 4  # reads the API and the receiver may have running at once


def backend_for(target: str) -> Backend:
    """The backend a `--db` target names: a PostgreSQL URL, else an SQLite file."""
    if store_postgres.is_url(target):
        return store_postgres.PostgresBackend(target)
    return store_sqlite.SqliteBackend(target)


def _fail(futures: list[Future[Any]], exc: BaseException) -> None:
    """Resolve every future not yet resolved with `exc` (its write did not commit)."""
    for future in futures:
        if future.done():
            continue
        if future.running() or future.set_running_or_notify_cancel():
            future.set_exception(exc)


class Store:
    def __init__(self, target: str) -> None:
        self.backend = backend_for(target)
        self.dialect = self.backend.dialect
        self.target = target  # what opened it (a URL's password included: never shown)
        self.path = self.backend.path  # what to show: the file, or the URL without password
        self._writer_db: Any = self.backend.connect()
        self.backend.create_schema(self._writer_db)
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
                db = self._writer_db
                try:
                    self._run_batch(db, jobs)
                except BaseException as exc:  # the writer must outlive a bad batch
                    if db.in_transaction:
                        with contextlib.suppress(Exception):
                            db.rollback()
                    _fail([future for _write, future in jobs], exc)
                    self._reconnect_if_lost()
            if stop:
                return

    def _reconnect_if_lost(self) -> None:
        """A PostgreSQL connection the server closed (a restart) is opened again, so the
        next batch can commit; SQLite's never breaks this way."""
        if self._writer_db.lost:
            with contextlib.suppress(Exception):
                self._writer_db = self.backend.connect()

    def _run_batch(self, db: Db, jobs: list[tuple[Write, Future[Any]]]) -> None:
        try:
            db.begin()
        except db.Error as exc:  # e.g. another process held the lock past busy_timeout
            _fail([future for _write, future in jobs], exc)
            self._reconnect_if_lost()
            return
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        for index, (write, future) in enumerate(jobs):
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up (cancelled) before the write began
            db.execute("SAVEPOINT job")
            try:
                result = write(db)
            except BaseException as exc:  # handed to the caller's future
                if not db.in_transaction:
                    # SQLite rolled the whole transaction back (disk full, I/O error): the
                    # writes before this one are gone too, and the rest get no transaction
                    _fail([f for f, _r, _e in results], exc)
                    future.set_exception(exc)
                    rest = jobs[index + 1 :]
                    if rest:
                        self._run_batch(db, rest)
                    return
                db.execute("ROLLBACK TO job")
                db.execute("RELEASE job")
                results.append((future, None, exc))
                continue
            db.execute("RELEASE job")
            results.append((future, result, None))
        try:
            db.commit()
        except db.Error as exc:
            if db.in_transaction:
                db.rollback()
            _fail([f for f, _r, _e in results], exc)
            return
        self.commits += 1
        self.writes += len(jobs)
        for future, result, error in results:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def close(self, after_writes: Callable[[], None] | None = None) -> None:
        """Stop the writer (what is queued is written), run `after_writes` (the done
        callbacks' own work, e.g. letting go of locks), then close every connection."""
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        if after_writes is not None:
            after_writes()
        self._writer_db.close()
        self._read_pool.shutdown(wait=True)
        self.backend.close()

    # -- reading ----------------------------------------------------------------------
    @property
    def read_db(self) -> Any:
        """The calling thread's SQLite read connection (opened on its first read)."""
        reader = getattr(self.backend, "reader", None)
        if reader is None:
            raise TypeError(f"{self.dialect.name} reads go through Store.query")
        return reader()

    async def read(self, fn: Callable[[Store], T]) -> T:
        """`fn(self)` run on a reader thread: how code on the event loop reads."""
        return await asyncio.get_running_loop().run_in_executor(self._read_pool, fn, self)

    def query(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        return self.backend.query(sql, params)

    def rows(self, sql: str, params: Params = ()) -> Iterator[dict[str, Any]]:
        return self.backend.rows(sql, params)
