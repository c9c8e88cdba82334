"""Live sessions and rule firings when several receivers share the store (PostgreSQL).

Any receiver may get any call of a transcript session, so memory is only a cache there:
a receiver decides a call under the session's lock (an advisory lock every receiver of
the database sees), on what the store holds (read back each time), and lets go of the
lock once the call's write is done. The same for an event of a trigger with a cooldown
rule (the lock of the user's firings outside sessions), and for the session-end sweep,
which ends only sessions it holds, after reading them back.

With one receiver on SQLite none of this runs: memory is the truth, written through
(engine.server.session_rows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from engine.runtime.sessions import FiringGate, SessionStore
from engine.server import session_rows
from engine.server.receipt import StoreBusy
from engine.server.store import Store

log = logging.getLogger("omi_rules.shared_sessions")

Release = Callable[[], None]
Key = tuple[str, str]  # (uid, session id); "" for the user's firings outside sessions
DUE_FROM_STORE = 200  # idle sessions read per sweep that this receiver does not hold
# sessions one sweep (a second) holds at most: each takes a pool connection until the
# sweep's writes are done (engine.server.store_postgres.POOL_SIZE); the rest wait a sweep
HOLDS_PER_SWEEP = 8


def lock_name(key: Key) -> str:
    uid, session_id = key
    return f"omi-rules session\x1f{uid}\x1f{session_id}"


class SharedSessions:
    def __init__(
        self, store: Store, sessions: SessionStore, gate: FiringGate, *, wait: float
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.gate = gate
        self.wait = wait  # seconds to wait for another receiver's hold, then LockBusy
        self.held: set[Key] = set()  # held by the rules thread's current work
        # letting go is a round trip to the database: not in the store's writer thread
        # (where a write's done callbacks run), which would wait for it between batches
        self._releaser = ThreadPoolExecutor(1, thread_name_prefix="session-unlock")

    def hold(self, key: Key, *, live: bool) -> Release | None:
        """Take `key`'s lock and read its state back (rules thread); None when this
        thread holds it already (a closing evaluation inside a call)."""
        if key in self.held:
            return None
        try:
            release = self.store.backend.lock(lock_name(key), self.wait)
        except TimeoutError as exc:  # LockBusy: answered 503, Omi sends it again
            raise StoreBusy(f"session {key[1]!r} was busy: {exc}") from None
        assert release is not None  # a waiting lock is taken or raises
        return self._refreshed(key, release, live=live)

    def _refreshed(self, key: Key, release: Release, *, live: bool) -> Release:
        try:
            if live:
                session_rows.reload_session(self.store, self.sessions, self.gate, *key)
            else:
                session_rows.refresh_firings(self.store, self.gate, key[0], key[1])
        except BaseException:
            release()
            raise
        self.held.add(key)
        return release

    def done(self, key: Key, release: Release | None, write: Future[Any] | None) -> None:
        """`key`'s work in the rules thread is over: its lock goes once every write queued
        under it is done. Not `write`'s own future (None when the call failed before its
        write): one cancelled by the answer deadline is done while a closing evaluation
        queued before it under the same hold is not; a write queued after them all is done
        only after them."""
        if release is None:
            return
        self.held.discard(key)
        # even without a write of its own: a closing evaluation may be queued under it
        self.store.submit(_nothing).add_done_callback(lambda _done: self._let_go([release]))

    def hold_due(self, now: float, idle: float) -> list[tuple[Key, Release]]:
        """Before a session-end sweep (rules thread): every session the sweep may end or
        close (idle, or waiting past its slot wait) in memory or in the store is held and
        read back; one another receiver holds is left out of memory (it is not this
        sweep's). Returns the holds, for `done_all` once the sweep's writes are queued."""
        due: dict[Key, float] = {  # key -> last heard: the longest quiet first
            (s.uid, s.session_id): s.last_seen
            for s in self.sessions
            if now - s.last_seen > idle or (s.waiting_until is not None and s.waiting_until <= now)
        }
        for row in self.store.query(
            "SELECT uid, session_id, last_seen FROM live_sessions WHERE ended_by IS NULL AND "
            "(last_seen < ? OR waiting_until <= ?) ORDER BY last_seen LIMIT ?",
            (now - idle, now, DUE_FROM_STORE),
        ):
            key = (row["uid"], row["session_id"])
            due[key] = min(due.get(key, row["last_seen"]), row["last_seen"])
        holds: list[tuple[Key, Release]] = []
        locking = True  # until the sweep's share is held, or no connection is free
        for key in sorted(due, key=lambda k: (due[k], k)):
            if key in self.held:
                continue
            release = None
            if locking and len(holds) < HOLDS_PER_SWEEP:  # each holds a pool connection
                try:
                    release = self.store.backend.lock(lock_name(key), 0)
                except Exception:  # no connection free, or the database is away: the
                    log.exception("could not lock session %s of uid %s", key[1], key[0])
                    locking = False  # next sweep tries again
            if release is None:  # another receiver is deciding a call, or the next sweep
                self.sessions.drop(*key)  # will: not this sweep's to end
                continue
            try:
                holds.append((key, self._refreshed(key, release, live=True)))
            except Exception:  # _refreshed let go of it
                log.exception("could not read back session %s of uid %s", key[1], key[0])
                self.sessions.drop(*key)
        return holds

    def done_all(self, holds: Iterable[tuple[Key, Release]]) -> None:
        """The sweep's writes are queued: its holds go once they are all done (a write
        queued after them is done only after them: the writer commits in order)."""
        holds = list(holds)
        if not holds:
            return
        for key, _release in holds:
            self.held.discard(key)
        barrier = self.store.submit(_nothing)
        barrier.add_done_callback(lambda _done: self._let_go([r for _key, r in holds]))

    def _let_go(self, releases: list[Release]) -> None:
        try:
            self._releaser.submit(_release_all, releases)
        except RuntimeError:  # shutting down: at once, here
            _release_all(releases)

    def close(self) -> None:
        """After the store's writer stopped: every release queued is done."""
        self._releaser.shutdown(wait=True)


def _release_all(releases: list[Release]) -> None:
    for release in releases:
        try:
            release()
        except Exception:  # the connection is closed then: its locks went with it
            log.exception("could not let go of a session lock")


def _nothing(_db: Any) -> None:
    return None
