"""Compiled conditions: predicates that run cheaply per event (built by
engine.rules.conditions when rules load).

A predicate answers `check(view) -> Verdict`: whether it holds, and if not, a reason a person
can read in dry-run and history ("$.structured.category is 'personal', not in [work]"), and
for a keyword slot still being spoken, when its waiting ends (`wait_until`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from engine.rules.budget import Budget
from engine.rules.keyword_count import KeywordCount, mentions
from engine.rules.keywords import KeywordHit, KeywordMatcher
from engine.rules.linear_regex import is_linear_regex
from engine.rules.slots import DEFAULT_SLOT_WAIT, SlotClock
from engine.rules.spoken import LOOKBACK_WORDS, SpokenText


class EventView(Protocol):
    """What a predicate may ask of an event (engine.runtime.event_view implements it)."""

    now: float
    budget: Budget
    # a closing evaluation: no new speech; open slots whose wait is over close (slots.py)
    closing: bool
    last_heard: float  # when the session last brought new speech (slot waits count from it)
    closed_at: float | None  # the last closing evaluation since the speech before (or None)
    previous_heard: float | None  # before this call (None: this call is the first)
    complete: bool  # not a live session's call: the end of the words closes an open slot
    session_ended: bool  # a closing evaluation as the session ends: every open slot closes

    def select(self, expression: str) -> list[Any]: ...

    first_new_segment: int

    def spoken(self, speaker: str, lookback_words: int = LOOKBACK_WORDS) -> SpokenText: ...

    def spoken_session(self, speaker: str) -> SpokenText: ...

    def render(self, source: str, *, field: str) -> str: ...


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    hit: KeywordHit | None = None
    wait_until: float | None = None  # not held: a slot still being spoken waits until then


HOLDS = Verdict(True)


class Predicate(Protocol):
    def check(self, view: EventView) -> Verdict: ...


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _clip(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _same(value: Any, other: Any) -> bool:
    """JSON equality: true and false are not the numbers 1 and 0 (Python says they are)."""
    return isinstance(value, bool) == isinstance(other, bool) and value == other


def _contains(value: Any, needle: Any) -> bool:
    if isinstance(value, str) and isinstance(needle, str):
        return needle.casefold() in value.casefold()
    if isinstance(value, list | tuple):
        return any(_same(_fold(item), _fold(needle)) for item in value)
    if isinstance(value, dict):
        return needle in value
    return False


def _compare(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def test(value: Any, bound: Any) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, int | float) and isinstance(bound, int | float):
            return op(value, bound)
        if isinstance(value, str) and isinstance(bound, str):
            return op(value, bound)
        if isinstance(value, str) and isinstance(bound, int | float):
            try:
                return op(float(value), bound)
            except ValueError:
                return False
        return False

    return test


# operator name -> (test on one selected value, phrase used when it fails)
VALUE_TESTS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "equals": (_same, "not equal to"),
    "not_equals": (lambda v, x: not _same(v, x), "equal to"),
    "in": (lambda v, x: any(_same(v, choice) for choice in x), "not in"),
    "not_in": (lambda v, x: not any(_same(v, choice) for choice in x), "in"),
    "contains": (_contains, "does not contain"),
    "matches": (lambda v, rx: isinstance(v, str) and rx.search(v) is not None, "does not match"),
    "gt": (_compare(lambda a, b: a > b), "not >"),
    "gte": (_compare(lambda a, b: a >= b), "not >="),
    "lt": (_compare(lambda a, b: a < b), "not <"),
    "lte": (_compare(lambda a, b: a <= b), "not <="),
}


def _all_hold(tests: list[tuple[str, Any]], value: Any) -> bool:
    return all(VALUE_TESTS[name][0](value, operand) for name, operand in tests)


def _shown(operand: Any) -> str:
    return _short(cast(Any, operand).pattern if is_linear_regex(operand) else operand)


@dataclass
class PathTest:
    """`path:` with its operators: holds when ANY selected value satisfies every value
    operator (so `gt: 1, lt: 5` is a range one value must fall in); `exists`, `empty` and
    `not_empty` judge the selection as a whole."""

    expression: str
    operators: list[tuple[str, Any]]

    def check(self, view: EventView) -> Verdict:
        values = view.select(self.expression)
        for name, operand in self.operators:
            if name == "exists":
                if bool(values) != operand:
                    state = "selects nothing" if not values else f"is {_short(values[0])}"
                    return Verdict(False, f"{self.expression} {state} (exists: {operand})")
                continue
            if name in ("empty", "not_empty"):
                want_empty = operand if name == "empty" else not operand
                any_empty = not values or any(_is_empty(v) for v in values)
                any_full = any(not _is_empty(v) for v in values)
                if (want_empty and not any_empty) or (not want_empty and not any_full):
                    state = _short(values[0]) if values else "nothing"
                    return Verdict(False, f"{self.expression} is {state} ({name}: {operand})")
                continue
        tests = [(name, operand) for name, operand in self.operators if name in VALUE_TESTS]
        if not tests or any(_all_hold(tests, value) for value in values):
            return HOLDS
        # explain with the first value and the first operator it fails
        if not values:
            name, operand = tests[0]
            return Verdict(False, f"{self.expression} selects nothing ({name}: {_shown(operand)})")
        value = values[0]
        name, operand = next((n, o) for n, o in tests if not VALUE_TESTS[n][0](value, o))
        phrase = VALUE_TESTS[name][1]
        return Verdict(False, f"{self.expression} is {_short(value)}, {phrase} {_shown(operand)}")


@dataclass
class KeywordTest:
    matcher: KeywordMatcher
    speaker: str
    count: KeywordCount | None = None  # `count:` (engine.rules.keyword_count)
    slot_wait: float = DEFAULT_SLOT_WAIT  # seconds an open trailing slot waits
    slot_wait_text: str = "10s"  # as the rule wrote it, for reasons

    def clock(self, view: EventView) -> SlotClock:
        """What the time says about this condition's open slots (engine.rules.slots)."""
        if view.complete:
            return SlotClock(end="fires")
        if view.closing:
            over = view.last_heard + self.slot_wait
            if view.now < over and not view.session_ended:  # the session's end: no wait
                return SlotClock()
            closed = view.closed_at is not None and view.closed_at >= over
            return SlotClock(end="old" if closed else "fires")
        # a slot open at the end of the last call was closed there (and fired) only if a
        # closing evaluation ran once its wait was over; else it goes on into this call
        previous, closed_at = view.previous_heard, view.closed_at
        if previous is None or closed_at is None:
            return SlotClock()
        return SlotClock(waited=closed_at >= previous + self.slot_wait)

    def check(self, view: EventView) -> Verdict:
        spoken = view.spoken(self.speaker, self.matcher.lookback_words)
        found = self.matcher.scan(spoken, view.budget.check, self.clock(view))
        hit, negated = found.hit, found.negated
        if hit is None and found.waiting is not None:
            name = found.waiting[1]
            return Verdict(
                False,
                f"slot {{{name}}} still being spoken; waits for the next call"
                f" (up to {self.slot_wait_text})",
                wait_until=view.last_heard + self.slot_wait,
            )
        if hit is None and negated is not None:
            return Verdict(
                False,
                f'keywords: "{negated.phrase}" was negated ("{_clip(negated.text)}")',
            )
        if hit is None:
            phrases = ", ".join(repr(p.text) for p in self.matcher.phrases)
            who = "" if self.speaker == "any" else f" by {self.speaker}"
            unsearched = ""
            if spoken.truncated:
                unsearched = (
                    f" (only the first {spoken.max_chars} characters of speech were searched;"
                    " match_max_text)"
                )
            return Verdict(False, f"no new speech{who} says {phrases}{unsearched}")
        if self.count is not None:
            return self._counted(view)
        return Verdict(True, hit=hit)

    def _counted(self, view: EventView) -> Verdict:
        """A phrase was heard in this call: does it make the count?"""
        assert self.count is not None
        spoken = view.spoken_session(self.speaker)
        tally = self.count.tally(mentions(self.matcher, spoken, view.budget.check))
        new = [m for m in tally.fired if m.segment >= view.first_new_segment]
        if new:
            return Verdict(True, hit=new[-1].hit)
        phrases = [p.text for p in self.matcher.phrases]
        return Verdict(False, self.count.shortfall(phrases, tally))


_FALSY_TEXT = frozenset({"", "false", "0", "none", "null", "no", "off"})


@dataclass
class TemplateTest:
    source: str

    def check(self, view: EventView) -> Verdict:
        text = view.render(self.source, field="when.template")
        if text.strip().casefold() in _FALSY_TEXT:
            return Verdict(False, f"template {self.source.strip()!r} rendered {text.strip()!r}")
        return HOLDS


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class TimeTest:
    after: time | None
    before: time | None
    weekdays: frozenset[int] | None
    zone: ZoneInfo | None

    def check(self, view: EventView) -> Verdict:
        now = (
            datetime.fromtimestamp(view.now, self.zone)
            if self.zone
            else datetime.fromtimestamp(view.now).astimezone()
        )
        if self.weekdays is not None and now.weekday() not in self.weekdays:
            return Verdict(False, f"{WEEKDAYS[now.weekday()]} is not one of the weekdays")
        clock = now.time().replace(tzinfo=None)
        after, before = self.after, self.before
        if after and before and after > before:  # window wraps past midnight
            inside = clock >= after or clock < before
        else:
            inside = (after is None or clock >= after) and (before is None or clock < before)
        if not inside:
            window = f"{after or '00:00'}-{before or '24:00'}"
            return Verdict(False, f"time {clock:%H:%M} outside {window}")
        return HOLDS


@dataclass
class AllOf:
    items: list[tuple[str, Predicate]]

    def check(self, view: EventView) -> Verdict:
        """Holds when every item holds. An item waiting on a keyword slot makes the whole
        wait only when it is all that is missing: another item that fails means the rule
        cannot fire, so it waits on nothing (as the rule index, which leaves it out, says)."""
        hit = None
        waiting: Verdict | None = None
        for label, predicate in self.items:
            view.budget.check()
            verdict = predicate.check(view)
            if not verdict.ok:
                reason = f"{label}: {verdict.reason}" if label else verdict.reason
                if verdict.wait_until is None:
                    return Verdict(False, reason)
                waiting = waiting or Verdict(False, reason, wait_until=verdict.wait_until)
                continue
            hit = hit or verdict.hit
        return waiting or Verdict(True, hit=hit)


@dataclass
class AnyOf:
    items: list[tuple[str, Predicate]]

    def check(self, view: EventView) -> Verdict:
        reasons = []
        waits = []
        for _label, predicate in self.items:
            view.budget.check()
            verdict = predicate.check(view)
            if verdict.ok:
                return verdict
            reasons.append(verdict.reason)
            if verdict.wait_until is not None:
                waits.append(verdict.wait_until)
        return Verdict(False, "none of: " + "; ".join(reasons), wait_until=min(waits, default=None))


@dataclass
class NotOf:
    inner: Predicate

    def check(self, view: EventView) -> Verdict:
        verdict = self.inner.check(view)
        if verdict.ok:
            return Verdict(False, "'not' condition holds")
        return HOLDS


def slot_tests(predicate: Predicate) -> list[KeywordTest]:
    """The keyword conditions inside `predicate` whose phrases end in a slot (a closing
    evaluation decides only rules holding one)."""
    if isinstance(predicate, KeywordTest):
        return [predicate] if predicate.matcher.has_trailing_slots else []
    if isinstance(predicate, AllOf | AnyOf):
        return [test for _label, item in predicate.items for test in slot_tests(item)]
    return []  # a slot under `not:` makes no rule fire when it closes
