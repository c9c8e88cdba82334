"""A circuit breaker per delivery target, like Omi's own per-URL breaker.

    closed --N consecutive retryable failures--> open --cool-off--> half-open
      ^                                            ^                   | one probe
      '------------------ success -----------------+---- failure ------'

While a target is open its actions stay pending: they are not claimed, so they use no
attempt and never die of it. After the cool-off one action is let through as a probe; its
success closes the breaker, its failure opens it for another cool-off. State lives in
memory: a restart closes every breaker, which costs at most N more failed attempts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("omi_rules.breaker")


@dataclass
class _State:
    failures: int = 0  # consecutive retryable failures
    opened_at: float | None = None  # None: closed
    probing: bool = False  # a probe is in flight (half-open)


@dataclass
class Breakers:
    """One breaker per target key."""

    threshold: int = 5  # consecutive retryable failures that open a target
    cooloff: float = 30.0  # seconds a target stays open before a probe
    _states: dict[str, _State] = field(default_factory=dict)

    def blocked(self, now: float) -> list[str]:
        """Targets nothing may be claimed for: open and cooling off, or probing."""
        return [
            target
            for target, state in self._states.items()
            if state.opened_at is not None
            and (state.probing or now < state.opened_at + self.cooloff)
        ]

    def half_open(self, now: float) -> list[str]:
        """Targets whose cool-off is over: one action may be claimed, as a probe."""
        return [
            target
            for target, state in self._states.items()
            if state.opened_at is not None
            and not state.probing
            and now >= state.opened_at + self.cooloff
        ]

    def claimed(self, target: str, now: float) -> None:
        """An action for `target` was claimed; after the cool-off it is the probe."""
        state = self._states.get(target)
        if state is not None and state.opened_at is not None:
            if now >= state.opened_at + self.cooloff:
                state.probing = True

    def released(self, target: str) -> None:
        """The probe ended without reaching the target (it could not be sent at all)."""
        state = self._states.get(target)
        if state is not None:
            state.probing = False

    def succeeded(self, target: str) -> None:
        state = self._states.pop(target, None)
        if state is not None and state.opened_at is not None:
            log.warning("circuit closed for %s: it answered again", target)

    def failed(self, target: str, now: float, reason: str) -> None:
        """A retryable failure: count it; open the target at the threshold (or when the
        probe failed)."""
        state = self._states.setdefault(target, _State())
        state.failures += 1
        if state.opened_at is not None and not state.probing:
            return  # an attempt claimed before the breaker opened: already open
        if state.probing or state.failures >= self.threshold:
            state.opened_at = now
            state.probing = False
            log.warning(
                "circuit open for %s after %d consecutive failures (last: %s); "
                "its actions wait %gs before a probe",
                target,
                state.failures,
                reason,
                self.cooloff,
            )

    def is_open(self, target: str) -> bool:
        state = self._states.get(target)
        return state is not None and state.opened_at is not None
