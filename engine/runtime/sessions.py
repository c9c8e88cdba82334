"""Live transcript sessions: what was said so far, what is new, and who fired already.

Omi sends only new segments, about once a second, keyed by `session_id`, which for
published apps is just the uid. So a session is (uid, session_id) and ends after a quiet
period, or when segment times start again near zero (a new conversation). Segments sent
again are recognized and dropped, so they never fire a rule twice.

The sender chooses `session_id` and the segments, so everything here is bounded
(`engine.runtime.limits.SessionLimits`): sessions per user and in all, segments and text per
session (the oldest drop off the front), one segment's text (cut), and the memory of
dropped segments (so one sent again is still recognized). What is dropped is logged.

A store made with `journal=True` also notes what changed (`take_changes`): the receiver
writes those changes in the same transaction as the event that caused them
(engine.server.session_rows), and `restore` puts sessions read back from the store, so a
restart or a failed write forgets nothing that was acknowledged, and keeps nothing that
was not.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from engine.runtime.limits import SessionLimits

log = logging.getLogger("omi_rules.sessions")

DEFAULT_IDLE_SECONDS = 120.0
RESTART_GAP_SECONDS = 30.0  # times this far back from the last end mean a new conversation
MAX_SEGMENTS = SessionLimits().segments  # per session kept for matching
# the fields a session keeps of a segment (templates see them as session.segments)
KEPT_FIELDS = (
    "id",
    "text",
    "speaker",
    "speaker_id",
    "speakerId",
    "speaker_name",
    "is_user",
    "start",
    "end",
)
RETIRED_KEPT = 4096  # ended or evicted sessions restore will not bring back
MAX_FIELD_CHARS = 256  # a kept field other than text is cut to this length
SEGMENT_OVERHEAD = 64  # bytes a kept segment counts besides its text


def segment_key(segment: Mapping[str, Any]) -> tuple[Any, ...]:
    if segment.get("id"):
        return ("id", segment["id"])
    start, end = segment.get("start"), segment.get("end")
    return (  # as floats: a time sent as 0 in one call and 0.0 in the next is one segment
        round(float(start), 2) if isinstance(start, int | float) else start,
        round(float(end), 2) if isinstance(end, int | float) else end,
        str(segment.get("text") or "").strip(),
    )


def segment_digest(segment: Mapping[str, Any]) -> bytes:
    """A short fixed-size identity for `segment_key` (what a session remembers)."""
    return hashlib.blake2b(repr(segment_key(segment)).encode(), digest_size=16).digest()


def kept_segment(segment: Mapping[str, Any], max_chars: int) -> tuple[dict[str, Any], bool]:
    """The part of a segment a session keeps: known scalar fields, text cut to `max_chars`;
    and whether the text was cut."""
    kept: dict[str, Any] = {}
    cut = False
    for name in KEPT_FIELDS:
        value = segment.get(name)
        if value is None or not isinstance(value, str | int | float | bool):
            continue
        if isinstance(value, str):
            limit = max_chars if name == "text" else MAX_FIELD_CHARS
            if len(value) > limit:
                value = value[:limit]
                cut = cut or name == "text"
        kept[name] = value
    return kept, cut


def segment_size(segment: Mapping[str, Any]) -> int:
    return len(str(segment.get("text") or "")) + SEGMENT_OVERHEAD


@dataclass
class Session:
    uid: str
    session_id: str
    number: int = 1  # which conversation this is, unique within the store
    segments: list[dict[str, Any]] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)  # segment_digest of each segment
    seqs: list[int] = field(default_factory=list)  # each segment's number in the session
    seen: set[bytes] = field(default_factory=set)  # keys of the segments kept
    # recently dropped segments: key -> its number in the session
    dropped: OrderedDict[bytes, int] = field(default_factory=OrderedDict)
    size: int = 0  # bytes counted for the kept segments
    first_seen: float = 0.0  # when its first call came
    last_seen: float = 0.0
    heard: float = 0.0  # when a call last brought new segments
    last_end: float = 0.0
    calls: int = 0
    next_seq: int = 0  # the number the next new segment gets
    # an open slot (engine.rules.keywords) waits for more speech until then
    waiting_until: float | None = None
    closed_at: float | None = None  # when its last closing evaluation ran
    # what the store has (engine.server.session_rows): segments numbered up to `flushed`,
    # and whether segments were dropped since
    flushed: int = -1
    trimmed: bool = False

    @property
    def key(self) -> str:
        return f"{self.session_id}#{self.number}"

    def knows(self, key: bytes) -> bool:
        return key in self.seen or key in self.dropped


@dataclass
class Observation:
    session: Session
    first_new: int  # index in session.segments of the first new segment
    dropped: list[str] = field(default_factory=list)  # what was cut or dropped, for the log

    @property
    def has_new(self) -> bool:
        return self.first_new < len(self.session.segments)


EndedBy = Literal["idle", "new_conversation"]


@dataclass(frozen=True)
class Change:
    """What happened to a session, for the store: `saved` (heard, or its waiting changed),
    `ended` (its end event is still to be raised) or `gone` (forget it)."""

    kind: Literal["saved", "ended", "gone"]
    session: Session
    ended_by: EndedBy | None = None


# called when a session ends: (session, why, when); the receiver raises transcript_session_end
OnEnd = Callable[[Session, EndedBy, float], None]


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def session_end_doc(session: Session, ended_by: EndedBy) -> dict[str, Any]:
    """The `transcript_session_end` event of an ended session: the whole session as it was
    kept (the segments within the session bounds), its joined text and its times (the first
    and last call, wall clock)."""
    return {
        "session_id": session.session_id,
        "segments": list(session.segments),
        "text": " ".join(str(s.get("text") or "").strip() for s in session.segments).strip(),
        "started_at": iso_time(session.first_seen),
        "ended_at": iso_time(session.last_seen),
        "duration": round(session.last_seen - session.first_seen, 3),
        "calls": session.calls,
        "ended_by": ended_by,
    }


class SessionStore:
    """In-memory sessions (the seam for a persistent store later), bounded by `limits`.

    `on_end` hears of each session that ended with segments kept: gone quiet for
    `idle_seconds` (expire, or its next call), or replaced by a new conversation under the
    same session id. A session evicted by the bounds does not end: it is dropped."""

    def __init__(
        self,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
        limits: SessionLimits | None = None,
        on_end: OnEnd | None = None,
        *,
        journal: bool = False,
        shared: bool = False,
    ) -> None:
        self.idle_seconds = idle_seconds
        # receivers share the store (engine.server.shared_sessions): memory is a cache of
        # it, so sessions are numbered apart, an eviction only forgets (the session may be
        # live on another receiver), and only a sweep holding a session ends it
        self.shared = shared
        self.limits = limits or SessionLimits()
        self.on_end = on_end
        self._journal: list[Change] | None = [] if journal else None
        # least recently heard first: eviction takes from the front
        self._sessions: OrderedDict[tuple[str, str], Session] = OrderedDict()
        self._per_uid: dict[str, set[tuple[str, str]]] = {}
        self._started = 0
        self.evicted = 0
        # numbers of sessions that ended or were evicted here: never brought back by
        # `restore` (a write that failed may have left their rows live in the store)
        self._retired: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, uid: str, session_id: str) -> Session | None:
        return self._sessions.get((uid, session_id))

    # -- the store's side ----------------------------------------------------------------
    def note(self, kind: Literal["saved", "ended", "gone"], session: Session, **kw: Any) -> None:
        if self._journal is not None:
            self._journal.append(Change(kind, session, **kw))

    def take_changes(self) -> list[Change]:
        """What changed since the last call (empty unless made with `journal=True`)."""
        if not self._journal:
            return []
        changes, self._journal = self._journal, []
        return changes

    def restore(self, sessions: Iterable[Session], ended: Mapping[int, EndedBy]) -> None:
        """Put sessions read back from the store (engine.server.session_rows): live ones
        in place of any held for their (uid, session id); those in `ended` (session
        number -> why) go to `on_end`, whose end event was not raised yet."""
        for session in sorted(sessions, key=lambda s: (s.last_seen, s.number)):
            self._started = max(self._started, session.number)
            if session.number in self._retired:
                continue  # its end (or eviction) is on its way to the store
            why = ended.get(session.number)
            if why is not None:
                self._ended(session, why, session.last_seen)
                continue
            key = (session.uid, session.session_id)
            held = self._sessions.get(key)
            if held is not None:  # two live rows for one session id: the newer one counts
                older, session = sorted((held, session), key=lambda s: s.number)
                self._gone(older)
                self._forget(key)
            self._sessions[key] = session
            self._per_uid.setdefault(session.uid, set()).add(key)
        while len(self._sessions) > self.limits.total:  # the limit was lowered since
            self._evict(next(iter(self._sessions)))

    def _gone(self, session: Session) -> None:
        """`session` is evicted or ended: its rows go, and restore never brings it back."""
        self.note("gone", session)
        self._retire(session)

    def _evict(self, key: tuple[str, str]) -> None:
        """Make room: the session goes from memory, and from the store unless it is
        shared (there another receiver may be hearing it; its own sweep ends it)."""
        if not self.shared:
            self._gone(self._sessions[key])
        self._forget(key)

    def unretire(self, number: int) -> None:
        """The write that would have ended session `number` did not commit: restore may
        bring it back (it is live in the store)."""
        self._retired.pop(number, None)

    def _retire(self, session: Session) -> None:
        self._retired[session.number] = None
        while len(self._retired) > RETIRED_KEPT:
            self._retired.popitem(last=False)

    def _next_number(self, now: float) -> int:
        """The next session's number: one more than the last; when `shared`, at
        least the time in ms above 20 random bits, so receivers sharing one store never
        give two sessions one number (63 bits: good until the year 2248)."""
        number = self._started + 1
        if self.shared:
            number = max(number, int(now * 1000) << 20 | random.getrandbits(20))
        return number

    def drop(self, uid: str, session_id: str) -> None:
        """Forget a session held in memory (its store rows are read again with restore)."""
        if (uid, session_id) in self._sessions:
            self._forget((uid, session_id))

    def observe(self, uid: str, session_id: str, segments: list[Any], now: float) -> Observation:
        key = (uid, session_id)
        session = self._sessions.get(key)
        dropped: list[str] = []
        ended_by = None if session is None else self._ended_by(session, segments, now)
        if session is None or ended_by is not None:
            if session is None:
                dropped += self._make_room(uid)
            elif ended_by is not None:
                self._ended(session, ended_by, now)
                self._forget(key)
            # numbered across the store's life, so a key is never reused after expiry
            self._started = self._next_number(now)
            session = Session(uid, session_id, number=self._started, first_seen=now)
            self._sessions[key] = session
            self._per_uid.setdefault(uid, set()).add(key)
        self._sessions.move_to_end(key)
        session.last_seen = now
        session.calls += 1
        first_new = len(session.segments)
        cut = 0
        for segment in segments:
            if not isinstance(segment, Mapping):
                continue
            marker = segment_digest(segment)
            if session.knows(marker):
                continue
            kept, was_cut = kept_segment(segment, self.limits.segment_chars)
            cut += was_cut
            session.seen.add(marker)
            session.keys.append(marker)
            session.seqs.append(session.next_seq)
            session.next_seq += 1
            session.segments.append(kept)
            session.size += segment_size(kept)
            end = kept.get("end")
            if isinstance(end, int | float):
                session.last_end = max(session.last_end, float(end))
        if len(session.segments) > first_new:
            session.heard = now
        if cut:
            dropped.append(f"{cut} segment(s) cut to {self.limits.segment_chars} characters")
        overflow = self._trim(session)
        if overflow:
            first_new = max(0, first_new - overflow)
            dropped.append(
                f"{overflow} oldest segment(s) dropped (over {self.limits.segments} segments "
                f"or {self.limits.bytes} bytes per session)"
            )
        if dropped:
            log.info("session %s of uid %s: %s", session.key, uid, "; ".join(dropped))
        self.note("saved", session)
        return Observation(session, first_new, dropped)

    def _trim(self, session: Session) -> int:
        """Drop the oldest segments past the segment and byte caps; how many."""
        limits = self.limits
        count = 0
        while count < len(session.segments) and (
            len(session.segments) - count > limits.segments or session.size > limits.bytes
        ):
            session.size -= segment_size(session.segments[count])
            count += 1
        if not count:
            return 0
        for marker, seq in zip(session.keys[:count], session.seqs[:count], strict=True):
            session.seen.discard(marker)
            session.dropped[marker] = seq
        while len(session.dropped) > limits.remembered_keys:
            session.dropped.popitem(last=False)
        del session.segments[:count]
        del session.keys[:count]
        del session.seqs[:count]
        session.trimmed = True
        return count

    def _make_room(self, uid: str) -> list[str]:
        """Evict the least recently heard sessions so a new one for `uid` fits."""
        notes = []
        mine = self._per_uid.get(uid, set())
        if len(mine) >= self.limits.per_uid:
            oldest = min(mine, key=lambda k: self._sessions[k].last_seen)
            self._evict(oldest)
            self.evicted += 1
            notes.append(f"evicted session {oldest[1]!r} (over {self.limits.per_uid} per uid)")
        while len(self._sessions) >= self.limits.total:
            oldest = next(iter(self._sessions))
            self._evict(oldest)
            self.evicted += 1
            notes.append(f"evicted a session of another uid (over {self.limits.total} in all)")
        return notes

    def _forget(self, key: tuple[str, str]) -> None:
        del self._sessions[key]
        owned = self._per_uid.get(key[0])
        if owned is not None:
            owned.discard(key)
            if not owned:
                del self._per_uid[key[0]]

    def _ended_by(self, session: Session, segments: list[Any], now: float) -> EndedBy | None:
        """Why a call starts a new conversation in place of `session` (None: it does not)."""
        if now - session.last_seen > self.idle_seconds:
            return "idle"
        starts = [
            float(s["start"])
            for s in segments
            if isinstance(s, Mapping) and isinstance(s.get("start"), int | float)
        ]
        if bool(starts) and min(starts) < session.last_end - RESTART_GAP_SECONDS:
            return "new_conversation"
        return None

    def _ended(self, session: Session, ended_by: EndedBy, now: float) -> None:
        """A session is over: its end event is raised (which forgets its store rows), or
        with nothing kept or nobody to hear of it, it is forgotten at once."""
        if self.on_end is not None and session.segments:
            self.note("ended", session, ended_by=ended_by)
            self._retire(session)
            self.on_end(session, ended_by, now)
        else:
            self._gone(session)

    def expire(self, now: float) -> int:
        """Forget sessions quiet for longer than the idle period (each one ends); returns
        how many."""
        stale = [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]
        for key in stale:
            self._ended(self._sessions[key], "idle", now)
            self._forget(key)
        return len(stale)


FiringKey = tuple[str, str, str]  # (rule id, uid, session key; "" outside live sessions)


class FiringGate:
    """once_per_session and cooldown, per rule, user and session.

    With `journal=True` it notes each firing and each forgetting for the store
    (engine.server.session_rows), like SessionStore."""

    def __init__(self, *, journal: bool = False) -> None:
        self._fired: dict[FiringKey, float] = {}
        self._scopes: dict[tuple[str, str], set[str]] = {}  # (uid, session) -> rule ids
        self._journal: list[tuple[FiringKey, float] | float] | None = [] if journal else None

    def refusal(
        self,
        rule_id: str,
        uid: str,
        session: str,
        *,
        once: bool,
        cooldown: float | None,
        now: float,
    ) -> str | None:
        last = self._fired.get((rule_id, uid, session))
        if last is None:
            return None
        if once:
            return "already fired in this session (once_per_session)"
        if cooldown is not None and now - last < cooldown:
            return f"cooling down ({cooldown - (now - last):.0f}s of {cooldown:g}s left)"
        return None

    def fired(self, rule_id: str, uid: str, session: str, now: float) -> None:
        key = (rule_id, uid, session)
        self._set(key, now)
        if self._journal is not None:
            self._journal.append((key, now))

    def forget_before(self, cutoff: float) -> int:
        """Drop firings older than `cutoff` (their sessions and cooldowns are long over)."""
        stale = [key for key, when in self._fired.items() if when < cutoff]
        for key in stale:
            self._pop(key)
        if stale and self._journal is not None:
            self._journal.append(cutoff)
        return len(stale)

    def take_changes(self) -> list[tuple[FiringKey, float] | float]:
        """Firings (key, when) and forgettings (a cutoff) since the last call."""
        if not self._journal:
            return []
        changes, self._journal = self._journal, []
        return changes

    def restore(self, firings: Iterable[tuple[FiringKey, float | None]]) -> None:
        """Firings read back from the store; None: the store has none (forget it)."""
        for key, when in firings:
            if when is None:
                self._pop(key)
            else:
                self._set(key, when)

    def replace_scope(
        self, uid: str, session: str, firings: Iterable[tuple[FiringKey, float]]
    ) -> None:
        """Every firing of `uid` in `session` is now `firings` (read back from a store
        other receivers write too: engine.server.shared_sessions)."""
        for rule_id in list(self._scopes.get((uid, session), ())):
            self._pop((rule_id, uid, session))
        self.restore(firings)

    def _set(self, key: FiringKey, when: float) -> None:
        self._fired[key] = when
        self._scopes.setdefault(key[1:], set()).add(key[0])

    def _pop(self, key: FiringKey) -> None:
        if self._fired.pop(key, None) is None:
            return
        scope = self._scopes.get(key[1:])
        if scope is not None:
            scope.discard(key[0])
            if not scope:
                del self._scopes[key[1:]]

    def when(self, key: FiringKey) -> float | None:
        return self._fired.get(key)

    def keys(self) -> list[FiringKey]:
        return list(self._fired)
