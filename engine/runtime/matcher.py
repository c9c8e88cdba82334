"""Decide, for one event, which rules fire and why the others do not.

Each rule is decided on its own: a rule whose matching fails or runs over its time budget
is skipped with that reason and the other rules are still decided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import TemplateError
from engine.rules.budget import BudgetExceeded
from engine.rules.compiled import CompiledRule
from engine.rules.jsonpaths import select
from engine.rules.keywords import KeywordHit
from engine.runtime.event_view import EventView
from engine.runtime.limits import Limits

log = logging.getLogger("omi_rules.matcher")

DEFAULT_FOR_EACH_LIMIT = Limits().for_each_limit


@dataclass
class Decision:
    rule: CompiledRule
    matched: bool
    reason: str = ""  # why a rule did not fire; for a fired rule, a note (for_each_limit)
    hit: KeywordHit | None = None
    items: list[Any] | None = None  # for_each selections; None when the rule has no for_each
    # False when the reason depends on more than the event and the rule (secrets set then,
    # time budgets, firing history): history keeps such a decision; the others it can
    # compute again when asked (engine.server.why_not)
    replayable: bool = True


# A gate answers why a rule may not fire now (cooldown, once per session) or None.
Gate = Callable[[CompiledRule], str | None]


def decide(
    rules: Sequence[CompiledRule],
    view: EventView,
    *,
    gate: Gate = lambda rule: None,
    missing_secrets: Callable[[CompiledRule], list[str]] = lambda rule: [],
    for_each_limit: int = DEFAULT_FOR_EACH_LIMIT,
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
            decisions.append(
                Decision(rule, False, f"secrets not set: {', '.join(missing)}", replayable=False)
            )
            continue
        spent = view.budget.event_spent()
        if spent:
            decisions.append(Decision(rule, False, spent, replayable=False))
            continue
        decisions.append(decide_one(rule, view, gate, for_each_limit))
    return decisions


def decide_one(
    rule: CompiledRule, view: EventView, gate: Gate, for_each_limit: int = DEFAULT_FOR_EACH_LIMIT
) -> Decision:
    view.rule = rule.context()
    view.budget.start_rule()
    try:
        decision = _match(rule, view, for_each_limit)
    except BudgetExceeded as exc:
        return Decision(rule, False, exc.reason, replayable=False)
    except TemplateError as exc:  # one rule's broken template must not stop the others
        return Decision(rule, False, f"{exc.field} failed: {exc.message}", replayable=False)
    except Exception as exc:  # a bug in one rule's matching skips that rule only
        log.exception("matching rule %s (%s:%d) failed", rule.id, rule.file, rule.line)
        return Decision(
            rule, False, f"matching failed: {type(exc).__name__}: {exc}", replayable=False
        )
    if not decision.matched:
        return decision
    refusal = gate(rule)
    if refusal:
        return Decision(rule, False, refusal, decision.hit, replayable=False)
    return decision


def _match(rule: CompiledRule, view: EventView, for_each_limit: int) -> Decision:
    verdict = rule.predicate.check(view)
    view.budget.check()  # a single slow condition counts too
    if not verdict.ok:
        return Decision(rule, False, verdict.reason, verdict.hit)
    if rule.spec.for_each is None:
        return Decision(rule, True, hit=verdict.hit)
    # the selection's time (bounded by the body size) counts toward the event's budget,
    # not the rule's: a rule that matched acts, on at most for_each_limit items
    items = select(rule.spec.for_each, view.doc)
    if not items:
        return Decision(rule, False, f"for_each {rule.spec.for_each} selected nothing")
    limit = rule.spec.for_each_limit or for_each_limit
    note = ""
    if len(items) > limit:
        note = f"for_each selected {len(items)} items; acting on the first {limit} (for_each_limit)"
        log.warning("rule %s: %s", rule.id, note)
        items = items[:limit]
    return Decision(rule, True, note, verdict.hit, items)
