"""`when:` conditions, compiled once at load into predicates that run cheaply per event.

A predicate answers `check(view) -> Verdict`: whether it holds, and if not, a reason a person
can read in dry-run and history ("$.structured.category is 'personal', not in [work]").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Protocol, TypeAlias, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2
from msgspec import UNSET

from engine.rules.budget import Budget
from engine.rules.jsonpaths import JsonPathSyntax, compile_jsonpath
from engine.rules.keywords import KeywordHit, KeywordMatcher, SpokenText
from engine.rules.rule_model import (
    CONDITION_KINDS,
    KEYWORD_OPTIONS,
    Condition,
    TimeWindow,
    condition_kinds,
    path_operators,
)
from engine.rules.templates import TemplateSyntax
from engine.rules.yaml_source import Path
from engine.triggers import default_triggers


class EventView(Protocol):
    """What a predicate may ask of an event (engine.runtime.event_view implements it)."""

    now: float
    budget: Budget

    def select(self, expression: str) -> list[Any]: ...

    def spoken(self, speaker: str) -> SpokenText: ...

    def render(self, source: str, *, field: str) -> str: ...


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    hit: KeywordHit | None = None


HOLDS = Verdict(True)


class Predicate(Protocol):
    def check(self, view: EventView) -> Verdict: ...


class CompileErrors(Protocol):
    """Where compile problems go (the rule loader records them with file and line)."""

    trigger: str

    def error(self, path: Path, message: str, *, key: bool = False) -> None: ...

    def template(self, source: str, path: Path) -> None: ...


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    return _short(cast(Any, operand).pattern if isinstance(operand, _RE2_TYPE) else operand)


LinearRegex: TypeAlias = Any  # re2's compiled pattern (google-re2 ships no type hints)
_RE2_TYPE: type = re2._Regexp
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is reported as a rule error, not on stderr


def compile_regex(pattern: str) -> LinearRegex:
    """`matches:` runs on RE2, whose time is linear in the text (no catastrophic
    backtracking on a sender's text). Syntax errors read as Python's `re` words them;
    a pattern RE2 cannot run (backreferences, lookaround) raises ValueError saying so."""
    re.compile(pattern)  # raises re.error with the familiar message
    try:
        compiled: LinearRegex = re2.compile(pattern, _RE2_OPTIONS)
        return compiled
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"matches: {pattern!r} needs a feature the linear-time regex engine (RE2) does "
            f"not have, such as backreferences or lookaround ({detail})"
        ) from None


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

    def check(self, view: EventView) -> Verdict:
        spoken = view.spoken(self.speaker)
        hit = self.matcher.find(spoken, tick=view.budget.check)
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
        return Verdict(True, hit=hit)


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
        hit = None
        for label, predicate in self.items:
            view.budget.check()
            verdict = predicate.check(view)
            if not verdict.ok:
                return Verdict(False, f"{label}: {verdict.reason}" if label else verdict.reason)
            hit = hit or verdict.hit
        return Verdict(True, hit=hit)


@dataclass
class AnyOf:
    items: list[tuple[str, Predicate]]

    def check(self, view: EventView) -> Verdict:
        reasons = []
        for _label, predicate in self.items:
            view.budget.check()
            verdict = predicate.check(view)
            if verdict.ok:
                return verdict
            reasons.append(verdict.reason)
        return Verdict(False, "none of: " + "; ".join(reasons))


@dataclass
class NotOf:
    inner: Predicate

    def check(self, view: EventView) -> Verdict:
        verdict = self.inner.check(view)
        if verdict.ok:
            return Verdict(False, "'not' condition holds")
        return HOLDS


def _parse_clock(text: str | None) -> time | None:
    if text is None:
        return None
    hours, minutes = (int(part) for part in text.split(":"))
    if hours == 24 and minutes == 0:
        return time.max  # the end of the day: `before: "24:00"` holds until midnight
    return time(hours, minutes) if hours < 24 and minutes < 60 else None


def compile_conditions(items: list[Condition], path: Path, errors: CompileErrors) -> AllOf:
    labelled = []
    for index, item in enumerate(items):
        predicate = compile_condition(item, (*path, index), errors)
        if predicate is not None:
            labelled.append((f"{path[-1]}[{index}]", predicate))
    return AllOf(labelled)


def compile_condition(cond: Condition, path: Path, errors: CompileErrors) -> Predicate | None:
    kinds = condition_kinds(cond)
    operators = path_operators(cond)
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        errors.error(
            path,
            f"a condition names exactly one of {', '.join(CONDITION_KINDS)} (found: {found})",
        )
        return None
    (kind,) = kinds
    if operators and kind != "path":
        errors.error(path, f"operators {', '.join(operators)} need a 'path:'")
        return None
    if kind != "keywords":
        for option in KEYWORD_OPTIONS:
            if getattr(cond, option) is not UNSET:
                errors.error((*path, option), f"'{option}' only goes with 'keywords:'", key=True)
                return None
    return COMPILERS[kind](cond, path, errors)


def _compile_path(cond: Condition, path: Path, errors: CompileErrors) -> Predicate | None:
    expression = str(cond.path)
    try:
        compile_jsonpath(expression)
    except JsonPathSyntax as exc:
        errors.error((*path, "path"), f"path: {exc}")
        return None
    operators = path_operators(cond)
    if not operators:
        operators = {"exists": True}
    compiled: list[tuple[str, Any]] = []
    for name, operand in operators.items():
        if name == "matches":
            try:
                operand = compile_regex(operand)
            except re.error as exc:
                errors.error((*path, "matches"), f"matches: bad regular expression: {exc}")
                return None
            except ValueError as exc:
                errors.error((*path, "matches"), str(exc))
                return None
        compiled.append((name, operand))
    return PathTest(expression, compiled)


def _compile_keywords(cond: Condition, path: Path, errors: CompileErrors) -> Predicate | None:
    if not default_triggers()[errors.trigger].has_text:
        message = f"keywords: an {errors.trigger} event carries no text"
        errors.error((*path, "keywords"), message, key=True)
        return None
    keywords = cond.keywords
    phrases = [keywords] if isinstance(keywords, str) else list(keywords) if keywords else []
    matcher = KeywordMatcher(phrases, fuzzy=bool(cond.fuzzy) if cond.fuzzy is not UNSET else False)
    if not matcher.phrases:
        errors.error((*path, "keywords"), "keywords: give at least one phrase with a word in it")
        return None
    speaker = cond.speaker if cond.speaker is not UNSET else "any"
    return KeywordTest(matcher, speaker)


def _compile_template(cond: Condition, path: Path, errors: CompileErrors) -> Predicate | None:
    try:
        errors.template(str(cond.template), (*path, "template"))
    except TemplateSyntax:
        return None
    return TemplateTest(str(cond.template))


def _compile_time(cond: Condition, path: Path, errors: CompileErrors) -> Predicate | None:
    window: TimeWindow = cond.time  # type: ignore[assignment]
    zone = None
    if window.tz:
        try:
            zone = ZoneInfo(window.tz)
        except (ZoneInfoNotFoundError, ValueError):
            errors.error((*path, "time", "tz"), f"time.tz: unknown time zone {window.tz!r}")
            return None
    clocks = {}
    for name in ("after", "before"):
        text = getattr(window, name)
        clocks[name] = _parse_clock(text)
        if text is not None and clocks[name] is None:
            errors.error((*path, "time", name), f"time.{name}: {text!r} is not a time of day")
            return None
    days = None
    if window.weekdays is not None:
        days = frozenset(WEEKDAYS.index(day) for day in window.weekdays)
    return TimeTest(clocks["after"], clocks["before"], days, zone)


def _compile_group(kind: str) -> Callable[[Condition, Path, CompileErrors], Predicate | None]:
    def compile_group(cond: Condition, path: Path, errors: CompileErrors) -> Predicate | None:
        field = "not_" if kind == "not" else kind
        items = getattr(cond, field)
        if not isinstance(items, list):
            items = [items]
        if not items:
            errors.error((*path, kind), f"{kind}: give at least one condition")
            return None
        group = compile_conditions(items, (*path, kind), errors)
        if len(group.items) != len(items):
            return None
        if kind == "any":
            return AnyOf(group.items)
        if kind == "not":
            return NotOf(group)
        return group

    return compile_group


COMPILERS: dict[str, Callable[[Condition, Path, CompileErrors], Predicate | None]] = {
    "path": _compile_path,
    "keywords": _compile_keywords,
    "template": _compile_template,
    "time": _compile_time,
    "any": _compile_group("any"),
    "all": _compile_group("all"),
    "not": _compile_group("not"),
}
