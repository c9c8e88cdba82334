"""Decide, for one event, which rules fire and why the others do not.

Each rule is decided on its own: a rule whose matching fails or runs over its time budget
is skipped with that reason and the other rules are still decided.

`decide_indexed` visits only the rules engine.rules.rule_index finds may fire and explains
the others when asked; `decide` visits every rule and is the reference it must agree with.
`decide_closing` decides a closing evaluation (engine.rules.slots): only rules waiting on a
keyword slot are visited, and only a hit with slots fires.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from engine.errors import TemplateError
from engine.rules.budget import Budget, BudgetExceeded
from engine.rules.compiled import CompiledRule
from engine.rules.jsonpaths import select
from engine.rules.keywords import KeywordHit
from engine.rules.predicates import slot_tests
from engine.rules.rule_index import RuleIndex
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
    wait_until: float | None = None  # a slot still being spoken: the rule waits until then


# A gate answers why a rule may not fire now (cooldown, once per session) or None.
Gate = Callable[[CompiledRule], str | None]
# Why a rule cannot act for this event's user yet (a per-user setting not set), or None.
Unready = Callable[[CompiledRule], str | None]


def decide(
    rules: Sequence[CompiledRule],
    view: EventView,
    *,
    gate: Gate = lambda rule: None,
    missing_secrets: Callable[[CompiledRule], list[str]] = lambda rule: [],
    for_each_limit: int = DEFAULT_FOR_EACH_LIMIT,
    unready: Unready = lambda rule: None,
) -> list[Decision]:
    """Every rule visited in turn (the reference `decide_indexed` agrees with)."""
    return [_decide(rule, view, gate, missing_secrets, for_each_limit, unready) for rule in rules]


def decide_indexed(
    index: RuleIndex,
    view: EventView,
    *,
    gate: Gate = lambda rule: None,
    missing_secrets: Callable[[CompiledRule], list[str]] = lambda rule: [],
    for_each_limit: int = DEFAULT_FOR_EACH_LIMIT,
    unready: Unready = lambda rule: None,
) -> Decisions:
    """The decisions `decide(index.rules, ...)` makes, visiting only the index's candidates:
    a rule it leaves out cannot fire, and its reason is worked out when someone reads it."""
    visited = {
        position: _decide(
            index.rules[position], view, gate, missing_secrets, for_each_limit, unready
        )
        for position in index.candidates(view)
    }

    quiet: list[EventView] = []  # made on the first explanation, shared by the rest

    def explain(position: int) -> Decision:
        # decided as at the index, before any rule was visited: the rule's own time budget,
        # not what is left of the event's
        if not quiet:
            copied = copy.copy(view)
            copied.budget = Budget(rule_ms=view.budget.rule_ms, clock=view.budget.clock)
            quiet.append(copied)
        rule = index.rules[position]
        decision = _decide(rule, quiet[0], gate, missing_secrets, for_each_limit, unready)
        if decision.matched:  # the index must never leave out a rule that fires
            log.error("rule index left out rule %s, which matches; it was not acted on", rule.id)
        return decision

    return Decisions(index.rules, visited, explain)


NOT_WAITING = "closing evaluation: the rule waits on no keyword slot"
NO_SLOT_HIT = "closing evaluation: only a keyword slot closed by its wait fires"


def decide_closing(
    rules: Sequence[CompiledRule],
    view: EventView,
    *,
    gate: Gate = lambda rule: None,
    missing_secrets: Callable[[CompiledRule], list[str]] = lambda rule: [],
    for_each_limit: int = DEFAULT_FOR_EACH_LIMIT,
    unready: Unready = lambda rule: None,
) -> Decisions:
    """A closing evaluation (`view.closing`, no new speech): the rules holding a phrase that
    ends in a slot are decided; one fires only with a hit whose slots its wait closed (no
    other condition fires a rule without new speech). History keeps these decisions (not
    `replayable`): replaying a session's calls does not raise closing evaluations."""
    visited = {}
    for position, rule in enumerate(rules):
        if not slot_tests(rule.predicate):
            continue
        decision = _decide(rule, view, gate, missing_secrets, for_each_limit, unready)
        if decision.matched and (decision.hit is None or not decision.hit.slots):
            decision = Decision(rule, False, NO_SLOT_HIT, decision.hit)
        # it depends on when the evaluation ran, which replaying the session's calls omits
        decision.replayable = False
        visited[position] = decision
    return Decisions(rules, visited, lambda i: Decision(rules[i], False, NOT_WAITING))


class Decisions(Sequence[Decision]):
    """Every rule's decision in rule order. Those of rules the index left out are made on
    first reading; `visited` and `matched` never make them."""

    def __init__(
        self,
        rules: Sequence[CompiledRule],
        visited: dict[int, Decision],
        explain: Callable[[int], Decision],
    ) -> None:
        self._rules = rules
        self._visited = visited
        self._explain = explain
        self._explained: dict[int, Decision] = {}

    def __len__(self) -> int:
        return len(self._rules)

    @overload
    def __getitem__(self, position: int) -> Decision: ...

    @overload
    def __getitem__(self, position: slice) -> list[Decision]: ...

    def __getitem__(self, position: int | slice) -> Decision | list[Decision]:
        if isinstance(position, slice):
            return [self[i] for i in range(len(self))[position]]
        position = range(len(self))[position]  # negative positions; IndexError past the end
        decision = self._visited.get(position) or self._explained.get(position)
        if decision is None:
            decision = self._explained[position] = self._explain(position)
        return decision

    def __iter__(self) -> Iterator[Decision]:
        return (self[position] for position in range(len(self)))

    @property
    def visited(self) -> list[Decision]:
        """The decisions of the rules the index found may fire, in rule order."""
        return [self._visited[position] for position in sorted(self._visited)]

    @property
    def matched(self) -> list[Decision]:
        return [decision for decision in self.visited if decision.matched]


def _decide(
    rule: CompiledRule,
    view: EventView,
    gate: Gate,
    missing_secrets: Callable[[CompiledRule], list[str]],
    for_each_limit: int,
    unready: Unready = lambda rule: None,
) -> Decision:
    if not rule.enabled:
        return Decision(rule, False, "disabled (enabled: false)")
    uid = view.event.uid
    if rule.uids is not None and uid not in rule.uids:
        return Decision(rule, False, f"uid {uid!r} is not in uids")
    missing = missing_secrets(rule)
    if missing:  # replayable: a rule version records the secrets unset when it served
        return Decision(rule, False, f"secrets not set: {', '.join(missing)}")
    not_set_up = unready(rule)
    if not_set_up:  # the user's settings change without the rules: history keeps it
        return Decision(rule, False, not_set_up, replayable=False)
    spent = view.budget.event_spent()
    if spent:
        return Decision(rule, False, spent, replayable=False)
    return decide_one(rule, view, gate, for_each_limit)


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
        return Decision(rule, False, verdict.reason, verdict.hit, wait_until=verdict.wait_until)
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
