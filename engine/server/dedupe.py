"""Dedupe keys and the in-memory window of recent ones.

A delivery's `DedupeKey` is the set of facts that make a later delivery its repeat (Omi's
idempotency header, its delivery id, the memory id, a signature); any one part shared makes
a repeat. It is stored in the events table's `dedupe_key` column, one part a line: only
`to_column` and `from_column` know that.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from engine.server.statuses import EventStatus
from engine.server.store import Db, Store

_SEPARATOR = "\n"  # a part is a digest (engine.server.capture.dedupe_part): never holds one


@dataclass(frozen=True)
class DedupeKey:
    parts: tuple[str, ...]

    @classmethod
    def of(cls, parts: Iterable[str]) -> DedupeKey | None:
        """The key of these parts, or None when there are none (nothing to dedupe by)."""
        parts = tuple(parts)
        return cls(parts) if parts else None

    def to_column(self) -> str:
        return _SEPARATOR.join(self.parts)

    @classmethod
    def from_column(cls, text: str) -> DedupeKey:
        return cls(tuple(text.split(_SEPARATOR)))


class RepeatOf(Exception):
    """The store holds a delivery sharing a part of this one's key (recorded by another
    receiver, or forgotten by this one's memory): the event being written repeats it."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"a repeat of event {event_id}")
        self.event_id = event_id


# a part is taken by the first event written with it, or again once its window is over
_CLAIM_PART = """
INSERT INTO dedupe_parts (part, event_id, received_at) VALUES (?, ?, ?)
ON CONFLICT (part) DO UPDATE SET event_id = excluded.event_id,
    received_at = excluded.received_at
WHERE dedupe_parts.received_at < ?
"""


def claim_parts(db: Db, key: DedupeKey, event_id: str, at: float, window: float) -> None:
    """In the event's write: its key's parts, each unique in the store (the constraint two
    receivers getting the same Omi retry at once meet: the second waits for the first's
    commit, then raises RepeatOf, and its transaction's savepoint undoes its rows)."""
    for part in key.parts:
        if db.execute(_CLAIM_PART, [part, event_id, at, at - window]).rowcount == 0:
            rows = list(db.query("SELECT event_id FROM dedupe_parts WHERE part = ?", [part]))
            raise RepeatOf(rows[0]["event_id"] if rows else "")


def key_column(key: DedupeKey | None) -> str | None:
    """What the events table stores for `key`."""
    return key.to_column() if key is not None else None


class Deduper:
    """Recent dedupe keys in memory (seeded from the store), so concurrent repeats of one
    delivery are caught before either is written. Keys are kept in the order they were
    claimed, so expiry drops them from the front: each claim costs O(1) amortized."""

    def __init__(self, window: float, max_keys: int = 1_000_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()  # part -> (at, event)

    def seed(self, store: Store, now: float) -> None:
        for row in store.rows(
            "SELECT dedupe_key, received_at, id FROM events "
            "WHERE dedupe_key IS NOT NULL AND received_at > ? AND status != ? "
            "ORDER BY received_at",
            (now - self.window, EventStatus.DUPLICATE),
        ):
            for part in DedupeKey.from_column(row["dedupe_key"]).parts:
                self._remember(part, row["received_at"], row["id"])

    def claim(self, key: DedupeKey | None, event_id: str, now: float) -> str | None:
        """None when `key` is new (now claimed); else the id of the event it repeats."""
        if key is None:
            return None
        self.prune(now)
        for part in key.parts:
            seen = self._seen.get(part)
            if seen is not None:
                return seen[1]
        for part in key.parts:
            self._remember(part, now, event_id)
        return None

    def _remember(self, part: str, at: float, event_id: str) -> None:
        self._seen[part] = (at, event_id)
        self._seen.move_to_end(part)
        while len(self._seen) > self.max_keys:  # a flood of new keys: forget the oldest
            self._seen.popitem(last=False)

    def repeats(self, key: DedupeKey | None, event_id: str, now: float) -> None:
        """`key` is now known to repeat `event_id` (the store said so: RepeatOf)."""
        self.release(key)
        self.claim(key, event_id, now)

    def release(self, key: DedupeKey | None) -> None:
        if key is not None:
            for part in key.parts:
                self._seen.pop(part, None)

    def prune(self, now: float) -> None:
        """Forget keys older than the window (the oldest are first)."""
        while self._seen:
            at, _event = next(iter(self._seen.values()))
            if now - at <= self.window:
                return
            self._seen.popitem(last=False)
