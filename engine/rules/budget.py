"""Time budgets for matching one event: each rule gets `rule_ms`, all rules `event_ms`.

Matching checks the budget between conditions, now and then inside keyword scans, and
after each rule; a rule over its budget is skipped with a reason, and once the event's
budget is spent the remaining rules are skipped too. A single step (one regex search, one
JSONPath walk) is not interrupted, so input sizes bound each step and the budget bounds
their number. The clock is injectable so tests need no real slowness.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class BudgetExceeded(Exception):
    """Raised at a check once the rule's (or the event's) time is up; `reason` says which."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Budget:
    def __init__(
        self,
        *,
        rule_ms: float | None = None,
        event_ms: float | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.clock = clock
        self.rule_ms = rule_ms
        self.event_ms = event_ms
        start = clock()
        self.event_deadline = None if event_ms is None else start + event_ms / 1000
        self.rule_deadline: float | None = None

    @classmethod
    def unlimited(cls) -> Budget:
        return cls()

    def event_reason(self) -> str:
        return (
            f"skipped: this event's matching took longer than {self.event_ms:g} ms "
            "(event_budget_ms)"
        )

    def event_spent(self) -> str | None:
        """The reason to skip every further rule once the event's budget is spent."""
        if self.event_deadline is not None and self.clock() >= self.event_deadline:
            return self.event_reason()
        return None

    def start_rule(self) -> None:
        self.rule_deadline = None if self.rule_ms is None else self.clock() + self.rule_ms / 1000

    def check(self) -> None:
        """Raise BudgetExceeded when the rule's or the event's time is up."""
        if self.rule_deadline is None and self.event_deadline is None:
            return
        now = self.clock()
        if self.rule_deadline is not None and now >= self.rule_deadline:
            raise BudgetExceeded(
                f"skipped: matching took longer than {self.rule_ms:g} ms (match_budget_ms)"
            )
        if self.event_deadline is not None and now >= self.event_deadline:
            raise BudgetExceeded(self.event_reason())
