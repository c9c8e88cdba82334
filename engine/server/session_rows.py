"""Live transcript sessions and rule firings in the store, so a restart or a failed write
changes nothing a sender was told: the changes one event made (engine.runtime.sessions'
journals) are written in that event's own transaction, and read back on start.

Tables (engine.server.store.SCHEMA): `live_sessions` (one row per session: its times and
counts, and `ended_by` once it ended and its end event is still to be raised),
`live_segments` (each kept segment by its number in the session; a dropped one keeps only
its digest, so it is still recognized when sent again) and `firings` (when a rule last
fired for a user and session: cooldown and once_per_session).

Everything here is bounded by the session limits: the rows of a session are the segments
it keeps plus the digests it remembers.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec

from engine.runtime.sessions import (
    Change,
    EndedBy,
    FiringGate,
    FiringKey,
    Session,
    SessionStore,
    segment_size,
)
from engine.server.store import Db, Store, Write

_UPSERT_SESSION = """
INSERT INTO live_sessions (number, uid, session_id, first_seen, last_seen, heard, last_end,
    calls, waiting_until, closed_at, ended_by)
VALUES (:number, :uid, :session_id, :first_seen, :last_seen, :heard, :last_end, :calls,
    :waiting_until, :closed_at, :ended_by)
ON CONFLICT (number) DO UPDATE SET last_seen = excluded.last_seen, heard = excluded.heard,
    last_end = excluded.last_end, calls = excluded.calls,
    waiting_until = excluded.waiting_until, closed_at = excluded.closed_at,
    ended_by = excluded.ended_by
"""
_INSERT_SEGMENT = """
INSERT INTO live_segments (number, seq, digest, segment) VALUES (?, ?, ?, ?)
ON CONFLICT (number, seq) DO UPDATE SET digest = excluded.digest, segment = excluded.segment
"""
_UPSERT_FIRING = """
INSERT INTO firings (rule_id, uid, session, fired_at) VALUES (?, ?, ?, ?)
ON CONFLICT (rule_id, uid, session) DO UPDATE SET fired_at = excluded.fired_at
"""


@dataclass
class Rows:
    """The statements that store some changes, taken when they were made (the sessions
    change on after that); `apply` runs them inside a transaction."""

    statements: list[tuple[str, Sequence[Any] | dict[str, Any]]] = field(default_factory=list)
    many: list[tuple[str, list[tuple[Any, ...]]]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.statements or self.many)

    def apply(self, db: Db) -> None:
        for sql, params in self.statements:
            db.execute(sql, params)
        for sql, rows in self.many:
            db.executemany(sql, rows)


def _session_row(session: Session, ended_by: EndedBy | None) -> dict[str, Any]:
    return {
        "number": session.number,
        "uid": session.uid,
        "session_id": session.session_id,
        "first_seen": session.first_seen,
        "last_seen": session.last_seen,
        "heard": session.heard,
        "last_end": session.last_end,
        "calls": session.calls,
        "waiting_until": session.waiting_until,
        "closed_at": session.closed_at,
        "ended_by": ended_by,
    }


def _save(rows: Rows, session: Session, ended_by: EndedBy | None = None) -> None:
    """The session's row, the segments it got since it was last saved and, when some
    were dropped since, what the store should forget of them."""
    number = session.number
    rows.statements.append((_UPSERT_SESSION, _session_row(session, ended_by)))
    new: list[tuple[Any, ...]] = []
    for marker, seq in reversed(session.dropped.items()):  # dropped before they were saved
        if seq <= session.flushed:
            break
        new.append((number, seq, marker, None))
    first = len(session.seqs)
    while first > 0 and session.seqs[first - 1] > session.flushed:
        first -= 1
    for index in range(first, len(session.seqs)):
        segment = msgspec.json.encode(session.segments[index])
        new.append((number, session.seqs[index], session.keys[index], segment))
    if new:
        rows.many.append((_INSERT_SEGMENT, new))
    if session.trimmed:
        kept_from = session.seqs[0] if session.seqs else session.next_seq
        remembered_from = next(iter(session.dropped.values()), kept_from)
        rows.statements.append(
            (
                "UPDATE live_segments SET segment = NULL "
                "WHERE number = ? AND seq < ? AND segment IS NOT NULL",
                (number, kept_from),
            )
        )
        rows.statements.append(
            ("DELETE FROM live_segments WHERE number = ? AND seq < ?", (number, remembered_from))
        )
        session.trimmed = False
    session.flushed = session.next_seq - 1


def _gone(rows: Rows, session: Session) -> None:
    number = session.number
    rows.statements.append(("DELETE FROM live_sessions WHERE number = ?", (number,)))
    rows.statements.append(("DELETE FROM live_segments WHERE number = ?", (number,)))
    rows.statements.append(
        ("DELETE FROM firings WHERE uid = ? AND session = ?", (session.uid, session.key))
    )


def rows_of(
    changes: Iterable[Change], firings: Iterable[tuple[FiringKey, float] | float] = ()
) -> Rows:
    """The statements for journal entries (SessionStore and FiringGate.take_changes), in
    their order; a session saved twice is written once, as it is now."""
    rows = Rows()
    changes = list(changes)
    last_saved = {id(c.session): i for i, c in enumerate(changes) if c.kind == "saved"}
    for index, change in enumerate(changes):
        if change.kind == "saved":
            if last_saved[id(change.session)] == index:
                _save(rows, change.session)
        elif change.kind == "ended":
            _save(rows, change.session, change.ended_by)
        else:
            _gone(rows, change.session)
    fired: list[tuple[Any, ...]] = []
    for item in firings:
        if isinstance(item, float | int):
            if fired:
                rows.many.append((_UPSERT_FIRING, fired))
                fired = []
            rows.statements.append(("DELETE FROM firings WHERE fired_at < ?", (item,)))
        else:
            (rule_id, uid, session), when = item
            fired.append((rule_id, uid, session, when))
    if fired:
        rows.many.append((_UPSERT_FIRING, fired))
    return rows


def closed_rows(session: Session, now: float) -> Rows:
    """An ended session's open slots were closed at `now` (it waits on nothing more)."""
    rows = Rows()
    rows.statements.append(
        (
            "UPDATE live_sessions SET waiting_until = NULL, closed_at = ? WHERE number = ?",
            (now, session.number),
        )
    )
    return rows


def gone_rows(session: Session) -> Rows:
    """Forget an ended session (written with its end event)."""
    rows = Rows()
    _gone(rows, session)
    return rows


def forget_uid(uid: str) -> Write:
    """A write removing every live session row of `uid`, segments and rule firings
    included (a user who disconnects and asks for their events to go)."""

    def write(db: Db) -> None:
        db.execute(
            "DELETE FROM live_segments WHERE number IN "
            "(SELECT number FROM live_sessions WHERE uid = ?)",
            [uid],
        )
        db.execute("DELETE FROM live_sessions WHERE uid = ?", [uid])
        db.execute("DELETE FROM firings WHERE uid = ?", [uid])

    return write


# -- reading back -----------------------------------------------------------------------


def _session_of(row: dict[str, Any], segments: list[dict[str, Any]]) -> Session:
    session = Session(
        row["uid"],
        row["session_id"],
        number=row["number"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        heard=row["heard"],
        last_end=row["last_end"],
        calls=row["calls"],
        waiting_until=row["waiting_until"],
        closed_at=row["closed_at"],
    )
    dropped: OrderedDict[bytes, int] = OrderedDict()
    for segment in segments:
        marker, seq = bytes(segment["digest"]), segment["seq"]
        if segment["segment"] is None:
            dropped[marker] = seq
            continue
        kept = cast(dict[str, Any], msgspec.json.decode(segment["segment"]))
        session.segments.append(kept)
        session.keys.append(marker)
        session.seqs.append(seq)
        session.seen.add(marker)
        session.size += segment_size(kept)
        session.next_seq = seq + 1
    session.dropped = dropped
    if dropped:
        session.next_seq = max(session.next_seq, max(dropped.values()) + 1)
    session.flushed = session.next_seq - 1
    return session


def read_sessions(
    store: Store, where: str = "", params: tuple[Any, ...] = ()
) -> tuple[list[Session], dict[int, EndedBy]]:
    """Sessions in the store (all, or those `where` picks), and which of them ended."""
    found = store.query(f"SELECT * FROM live_sessions {where} ORDER BY number", params)
    if not found:
        return [], {}
    segments: dict[int, list[dict[str, Any]]] = defaultdict(list)
    sql = "SELECT number, seq, digest, segment FROM live_segments"
    numbers: tuple[int, ...] = ()
    if where:  # some sessions (few): their segments only
        numbers = tuple(row["number"] for row in found)
        sql += f" WHERE number IN ({', '.join('?' * len(numbers))})"
    for segment in store.rows(sql + " ORDER BY number, seq", numbers):
        segments[segment["number"]].append(segment)
    sessions, ended = [], {}
    for row in found:
        sessions.append(_session_of(row, segments.get(row["number"], [])))
        if row["ended_by"]:
            ended[row["number"]] = cast(EndedBy, row["ended_by"])
    return sessions, ended


def read_firings(
    store: Store, where: str = "", params: tuple[Any, ...] = ()
) -> list[tuple[FiringKey, float]]:
    rows = store.query(f"SELECT rule_id, uid, session, fired_at FROM firings {where}", params)
    return [((r["rule_id"], r["uid"], r["session"]), r["fired_at"]) for r in rows]


def restore(store: Store, sessions: SessionStore, gate: FiringGate) -> int:
    """Read every session and firing back (on start); returns how many sessions."""
    found, ended = read_sessions(store)
    sessions.restore(found, ended)
    gate.restore(read_firings(store))
    return len(found)


def reload_session(
    store: Store, sessions: SessionStore, gate: FiringGate, uid: str, session_id: str
) -> None:
    """Memory's (uid, session id) and its firings made what the store holds now: after a
    write that did not commit, and, with receivers sharing the store
    (engine.server.shared_sessions), before each call (another receiver may have taken
    the session's last calls, or ended it)."""
    held = sessions.get(uid, session_id)
    sessions.drop(uid, session_id)
    found, ended = read_sessions(
        store, "WHERE uid = ? AND session_id = ? AND ended_by IS NULL", (uid, session_id)
    )
    sessions.restore(found, ended)
    keys = {session.key for session in found}
    if held is not None:
        keys.add(held.key)
    for key in keys:
        refresh_firings(store, gate, uid, key)


def refresh_firings(store: Store, gate: FiringGate, uid: str, session: str) -> None:
    """Memory's firings of `uid` in `session` ("" outside sessions: cooldowns) made what
    the store holds."""
    gate.replace_scope(
        uid, session, read_firings(store, "WHERE uid = ? AND session = ?", (uid, session))
    )


def undo_firings(
    store: Store, gate: FiringGate, firings: Iterable[tuple[FiringKey, float] | float]
) -> None:
    """After a write that did not commit: its firings are put back to what the store has,
    unless the rule fired again since."""
    undone = []
    for item in firings:
        if isinstance(item, float | int):
            continue
        key, when = item
        if gate.when(key) != when:
            continue
        stored = read_firings(store, "WHERE rule_id = ? AND uid = ? AND session = ?", key)
        undone.append((key, stored[0][1] if stored else None))
    gate.restore(undone)
