"""Decide, for one event, which rules fire and why the others do not."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import TemplateError
from engine.event_view import EventView
from engine.jsonpaths import select
from engine.keywords import KeywordHit
from engine.loader import CompiledRule


@dataclass
class Decision:
    rule: CompiledRule
    matched: bool
    reason: str = ""
    hit: KeywordHit | None = None
    items: list[Any] | None = None  # for_each selections; None when the rule has no for_each


# A gate answers why a rule may not fire now (cooldown, once per session) or None.
Gate = Callable[[CompiledRule], str | None]


def decide(
    rules: Sequence[CompiledRule],
    view: EventView,
    *,
    gate: Gate = lambda rule: None,
    missing_secrets: Callable[[CompiledRule], list[str]] = lambda rule: [],
) -> list[Decision]:
    decisions = []
    uid = view.event.uid
    for rule in rules:
        if not rule.enabled:
            decisions.append(Decision(rule, False, "disabled (enabled: false)"))
            continue
        if rule.uids is not None and uid not in rule.uids:
            decisions.append(Decision(rule, False, f"uid {uid!r} is not in uids"))
            continue
        missing = missing_secrets(rule)
        if missing:
            decisions.append(Decision(rule, False, f"secrets not set: {', '.join(missing)}"))
            continue
        decisions.append(decide_one(rule, view, gate))
    return decisions


def decide_one(rule: CompiledRule, view: EventView, gate: Gate) -> Decision:
    view.rule = rule.context()
    try:
        verdict = rule.predicate.check(view)
    except TemplateError as exc:  # one rule's broken template must not stop the others
        return Decision(rule, False, f"{exc.field} failed: {exc.message}")
    if not verdict.ok:
        return Decision(rule, False, verdict.reason, verdict.hit)
    items = None
    if rule.spec.for_each is not None:
        items = select(rule.spec.for_each, view.doc)
        if not items:
            return Decision(rule, False, f"for_each {rule.spec.for_each} selected nothing")
    refusal = gate(rule)
    if refusal:
        return Decision(rule, False, refusal, verdict.hit)
    return Decision(rule, True, hit=verdict.hit, items=items)
