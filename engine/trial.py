"""A rule being edited, tried on its own: compiled from its text without touching the rules
folder, then dry-run on a payload (pasted, a sample, or captured events in order).

The web editor's live test, backtest and "save as test case" start here; nothing is sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from msgspec import Struct

from engine.connector import Registry
from engine.dryrun import EventReport, dry_run_events
from engine.errors import RuleError
from engine.rules.compiled import RuleSet
from engine.rules.loader import load_text
from engine.rules.templates import Templates
from engine.runtime.event_view import EventView
from engine.runtime.payloads import Event
from engine.secrets import Secrets

CANDIDATE_FILE = "(editor)"
MAX_VARIABLES = 400  # names offered for completion; a huge payload must not flood the page
MAX_DEPTH = 6
PER_TURN_NAMES = ("item", "rule.id", "match.phrase", "match.text", "match.speaker", "match.slots")


class Problem(Struct):
    """A validator message at a line and column of the text being edited."""

    line: int
    column: int
    message: str
    severity: str = "error"


class Candidate(Struct):
    rules: list[Any]  # CompiledRule (not a Struct); kept opaque here
    problems: list[Problem]

    @property
    def ruleset(self) -> RuleSet:
        return RuleSet(rules=list(self.rules))


class TrialResult(Struct):
    reports: list[EventReport]
    problems: list[Problem]
    variables: list[str]
    milliseconds: float


def problems_of(errors: Iterable[RuleError], severity: str = "error") -> list[Problem]:
    return [Problem(e.line or 1, e.column or 1, e.message, severity) for e in errors]


def compile_candidate(text: str, registry: Registry, templates: Templates) -> Candidate:
    """The rules of `text` (one rule or a list), with every error and warning at its line."""
    rules, errors, _broken = load_text(text, CANDIDATE_FILE, registry, templates)
    problems = problems_of(errors)
    for rule in rules:
        problems.extend(problems_of(rule.warnings, "warning"))
    return Candidate(rules=rules, problems=sorted(problems, key=lambda p: (p.line, p.column)))


def flatten_names(value: Any, prefix: str, depth: int = 0) -> Iterator[str]:
    """Dotted names reachable in `value` (lists by their first item, `[0]`)."""
    if depth >= MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            if not isinstance(key, str) or not key.isidentifier():
                continue
            name = f"{prefix}.{key}" if prefix else key
            yield name
            yield from flatten_names(child, name, depth + 1)
    elif isinstance(value, list) and value:
        name = f"{prefix}[0]"
        yield name
        yield from flatten_names(value[0], name, depth + 1)


def template_variables(event: Event, secrets: Secrets, templates: Templates) -> list[str]:
    """The names a template can use on this event: its trigger's aliases, `event`, `uid`,
    the per-rule names, and `secrets.NAME` for each secret that is set (never a value)."""
    view = EventView(event, templates, secrets={})
    context = {k: v for k, v in view.context().items() if k not in ("secrets", "now")}
    names = ["now", *PER_TURN_NAMES, *(f"secrets.{n}" for n in secrets.names())]
    for name, value in context.items():
        names.append(name)
        names.extend(flatten_names(value, name))
        if len(names) > MAX_VARIABLES:
            break
    seen: dict[str, None] = dict.fromkeys(names)
    return list(seen)[:MAX_VARIABLES]


def try_rule(
    text: str,
    events: Sequence[Event],
    *,
    registry: Registry,
    secrets: Secrets,
    data_dir: str = "data",
    allow_hosts: Sequence[str] = (),
    candidate: Candidate | None = None,
) -> TrialResult:
    """Dry-run the rule text on `events` (one stream, in order); `candidate` is the text
    compiled already, when the caller has it."""
    started = time.perf_counter()
    templates = Templates()
    if candidate is None:
        candidate = compile_candidate(text, registry, templates)
    reports: list[EventReport] = []
    if candidate.rules and events:
        reports = list(
            dry_run_events(
                events, candidate.ruleset, secrets, data_dir=data_dir, allow_hosts=allow_hosts
            )
        )
    variables = template_variables(events[-1], secrets, templates) if events else []
    return TrialResult(
        reports=reports,
        problems=candidate.problems,
        variables=variables,
        milliseconds=round((time.perf_counter() - started) * 1000, 2),
    )
