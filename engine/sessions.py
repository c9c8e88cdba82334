"""Live transcript sessions: what was said so far, what is new, and who fired already.

Omi sends only new segments, about once a second, keyed by `session_id`, which for
published apps is just the uid. So a session is (uid, session_id) and ends after a quiet
period, or when segment times start again near zero (a new conversation). Segments sent
again are recognized and dropped, so they never fire a rule twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_IDLE_SECONDS = 120.0
RESTART_GAP_SECONDS = 30.0  # times this far back from the last end mean a new conversation
MAX_SEGMENTS = 2000  # per session kept for matching; older ones drop off the front


def segment_key(segment: Mapping[str, Any]) -> tuple[Any, ...]:
    if segment.get("id"):
        return ("id", segment["id"])
    start, end = segment.get("start"), segment.get("end")
    return (
        round(start, 2) if isinstance(start, int | float) else start,
        round(end, 2) if isinstance(end, int | float) else end,
        str(segment.get("text") or "").strip(),
    )


@dataclass
class Session:
    uid: str
    session_id: str
    number: int = 1  # which conversation this is, unique within the store
    segments: list[Mapping[str, Any]] = field(default_factory=list)
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    last_seen: float = 0.0
    last_end: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.session_id}#{self.number}"


@dataclass
class Observation:
    session: Session
    first_new: int  # index in session.segments of the first new segment

    @property
    def has_new(self) -> bool:
        return self.first_new < len(self.session.segments)


class SessionStore:
    """In-memory sessions (the seam for a persistent store later)."""

    def __init__(self, idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._sessions: dict[tuple[str, str], Session] = {}
        self._started = 0

    def observe(self, uid: str, session_id: str, segments: list[Any], now: float) -> Observation:
        key = (uid, session_id)
        session = self._sessions.get(key)
        if session is None or self._is_new_conversation(session, segments, now):
            # numbered across the store's life, so a key is never reused after expiry
            self._started += 1
            session = Session(uid, session_id, number=self._started)
            self._sessions[key] = session
        session.last_seen = now
        first_new = len(session.segments)
        for segment in segments:
            if not isinstance(segment, Mapping):
                continue
            marker = segment_key(segment)
            if marker in session.seen:
                continue
            session.seen.add(marker)
            session.segments.append(segment)
            end = segment.get("end")
            if isinstance(end, int | float):
                session.last_end = max(session.last_end, float(end))
        overflow = len(session.segments) - MAX_SEGMENTS
        if overflow > 0:
            del session.segments[:overflow]
            first_new = max(0, first_new - overflow)
        return Observation(session, first_new)

    def _is_new_conversation(self, session: Session, segments: list[Any], now: float) -> bool:
        if now - session.last_seen > self.idle_seconds:
            return True
        starts = [s.get("start") for s in segments if isinstance(s, Mapping)]
        starts = [s for s in starts if isinstance(s, int | float)]
        return bool(starts) and min(starts) < session.last_end - RESTART_GAP_SECONDS

    def expire(self, now: float) -> int:
        """Forget sessions quiet for longer than the idle period; returns how many."""
        stale = [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]
        for key in stale:
            del self._sessions[key]
        return len(stale)


class FiringGate:
    """once_per_session and cooldown, per rule, user and session."""

    def __init__(self) -> None:
        self._fired: dict[tuple[str, str, str], float] = {}

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
        self._fired[(rule_id, uid, session)] = now

    def forget_before(self, cutoff: float) -> int:
        """Drop firings older than `cutoff` (their sessions and cooldowns are long over)."""
        stale = [key for key, when in self._fired.items() if when < cutoff]
        for key in stale:
            del self._fired[key]
        return len(stale)
