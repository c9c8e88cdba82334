"""`when:` conditions, compiled once at load into the predicates of
engine.rules.predicates, with every problem recorded at its file:line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import time
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import UNSET

from engine.durations import parse_duration
from engine.rules.jsonpaths import JsonPathSyntax, compile_jsonpath
from engine.rules.keyword_count import KeywordCount
from engine.rules.keywords import KeywordMatcher, Phrase
from engine.rules.linear_regex import compile_regex
from engine.rules.predicates import (
    WEEKDAYS,
    AllOf,
    AnyOf,
    KeywordTest,
    NotOf,
    PathTest,
    Predicate,
    TemplateTest,
    TimeTest,
)
from engine.rules.rule_model import (
    CONDITION_KINDS,
    KEYWORD_OPTIONS,
    Condition,
    TimeWindow,
    condition_kinds,
    path_operators,
)
from engine.rules.slots import DEFAULT_SLOT_WAIT, MAX_SLOT_WAIT, SlotSyntax
from engine.rules.templates import TemplateSyntax
from engine.rules.yaml_source import Path
from engine.triggers import default_triggers


class CompileErrors(Protocol):
    """Where compile problems go (the rule loader records them with file and line)."""

    trigger: str

    def error(self, path: Path, message: str, *, key: bool = False) -> None: ...

    def template(self, source: str, path: Path) -> None: ...


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
    for index, phrase in enumerate(phrases):
        try:
            Phrase.of(phrase)
        except SlotSyntax as exc:
            where = (*path, "keywords") if isinstance(keywords, str) else (*path, "keywords", index)
            errors.error(where, f"keywords: {exc}")
            return None
    matcher = KeywordMatcher(
        phrases,
        fuzzy=bool(cond.fuzzy) if cond.fuzzy is not UNSET else False,
        allow_negated=cond.negation == "allow",
    )
    if not matcher.phrases:
        errors.error((*path, "keywords"), "keywords: give at least one phrase with a word in it")
        return None
    speaker = cond.speaker if cond.speaker is not UNSET else "any"
    count = None
    if cond.count is not UNSET:
        within = None
        if cond.count.within is not None:
            try:
                within = parse_duration(cond.count.within)
            except ValueError as exc:
                errors.error((*path, "count", "within"), f"count.within: {exc}")
                return None
        within_text = _duration_text(cond.count.within)
        count = KeywordCount(cond.count.at_least, within, within_text)
    if count is not None and matcher.has_slots:
        message = "count: does not go with a phrase with slots (counting slots is not supported)"
        errors.error((*path, "count"), message, key=True)
        return None
    wait = _slot_wait(cond, matcher, path, errors)
    if wait is None:
        return None
    return KeywordTest(matcher, speaker, count, *wait)


def _slot_wait(
    cond: Condition, matcher: KeywordMatcher, path: Path, errors: CompileErrors
) -> tuple[float, str] | None:
    """`slot_wait:` in seconds and as written (the default when unset), or None (an error)."""
    if cond.slot_wait is UNSET:
        return DEFAULT_SLOT_WAIT, _duration_text(DEFAULT_SLOT_WAIT)
    if not matcher.has_trailing_slots:
        message = (
            "'slot_wait' only goes with a phrase ending in a slot, like \"remind me to {task}\""
        )
        errors.error((*path, "slot_wait"), message, key=True)
        return None
    try:
        wait = parse_duration(cond.slot_wait)
    except ValueError as exc:
        errors.error((*path, "slot_wait"), f"slot_wait: {exc}")
        return None
    if wait > MAX_SLOT_WAIT:
        text = _duration_text(cond.slot_wait)
        errors.error((*path, "slot_wait"), f"slot_wait: {text} is longer than {MAX_SLOT_WAIT:g}s")
        return None
    return wait, _duration_text(cond.slot_wait)


def _duration_text(value: str | float | None) -> str:
    if isinstance(value, str):
        return value.strip()
    return "" if value is None else f"{value:g}s"


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
