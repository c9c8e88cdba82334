"""Bounds on the work one webhook may cause: transcript sessions, matched text, time spent
matching, `for_each` fan-out and template rendering. Defaults suit one person's Omi; each
is a setting (`engine.config.Settings`) and documented in README's "Limits"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Settings


@dataclass(frozen=True)
class SessionLimits:
    per_uid: int = 16  # live sessions one user may hold; the least recently heard is evicted
    total: int = 256  # live sessions across all users; the least recently heard is evicted
    segments: int = 2000  # segments kept per session; the oldest drop off the front
    bytes: int = 256 * 1024  # text kept per session; the oldest segments drop off
    segment_chars: int = 8192  # one segment's text is cut to this length
    remembered_keys: int = 4096  # dropped segments still recognized when sent again


@dataclass(frozen=True)
class Limits:
    sessions: SessionLimits = field(default_factory=SessionLimits)
    match_max_text: int = 64 * 1024  # characters of speech keyword matching scans per event
    match_budget_ms: float = 50.0  # one rule's matching; over it the rule is skipped
    event_budget_ms: float = 1000.0  # all rules of one event; rules after it are skipped
    render_budget_ms: float = 100.0  # one template render; over it that render fails
    for_each_limit: int = 50  # items one rule acts on per event (a rule may set its own)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            sessions=SessionLimits(
                per_uid=settings.session_max_per_uid,
                total=settings.session_max_total,
                segments=settings.session_max_segments,
                bytes=settings.session_max_bytes,
                segment_chars=settings.segment_max_chars,
            ),
            match_max_text=settings.match_max_text,
            match_budget_ms=settings.match_budget_ms,
            event_budget_ms=settings.event_budget_ms,
            render_budget_ms=settings.render_budget_ms,
            for_each_limit=settings.for_each_limit,
        )
