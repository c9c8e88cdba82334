"""Why a rule did not fire, computed when someone asks instead of stored for every rule.

History keeps what it cannot compute again: the rules that fired, and the refusals that
depended on the moment (secrets unset then, a time budget, a cooldown after an earlier
event). Every other rule failed a condition of the event itself: replaying the event (for a
live transcript, its session's calls in order) through the rule version it was decided
with gives the same reason, so a stored event costs the same bytes with 10 rules or 10,000,
and its trace reads exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from engine.rules.compiled import RuleSet
from engine.runtime.matcher import Decision, Decisions
from engine.runtime.payloads import Event
from engine.runtime.pipeline import Outcome, Pipeline
from engine.secrets import Secrets
from engine.server.rule_versions import VERSIONS
from engine.server.store import Store


def kept(decision: Decision) -> bool:
    """Whether history stores a decision (the others are computed when asked)."""
    return decision.matched or not decision.replayable


def stored_decisions(outcome: Outcome | None) -> str:
    """The decisions history stores. Only visited rules are looked at: those the rule
    index left out failed a condition of the event (nothing to store, nothing to explain
    now, engine.runtime.matcher.Decisions)."""
    if outcome is None:
        return "[]"
    decisions = outcome.decisions
    visited = decisions.visited if isinstance(decisions, Decisions) else decisions
    return msgspec.json.encode(
        [{"rule": d.rule.id, "matched": d.matched, "reason": d.reason} for d in visited if kept(d)]
    ).decode()


def replay(events: list[Event], rules: RuleSet, secrets: Secrets) -> Sequence[Decision]:
    """The decisions for the last of `events`, processed in order as they were received,
    with the secrets (names) set as they were then."""
    pipeline = Pipeline(rules, secrets, dry_run=True, check_secrets=True)
    outcome = Outcome(events[-1])
    for event in events:
        outcome = pipeline.process(event, now=event.received_at)
    return outcome.decisions


def complete(
    store: Store,
    version: str,
    stored: list[dict[str, Any]],
    calls: Callable[[], list[Event]],
) -> list[dict[str, Any]]:
    """Every rule's decision for a stored event: the stored ones as they are, the others
    computed again, in the order of the rules. `calls` gives what to replay: the event, or
    its live session's calls up to it. Without its version (an event stored before
    versions, or pruned) the stored ones are all there is."""
    found = VERSIONS.get(store, version) if version else None
    if found is None:
        return stored
    rules = found.rules
    events = calls()
    if not events:
        return stored
    trigger_rules = rules.for_trigger(events[-1].trigger)
    known = {d["rule"] for d in stored}
    if all(rule.id in known for rule in trigger_rules):
        return stored
    computed = {d.rule.id: d for d in replay(events, rules, found.secrets)}
    by_rule = {d["rule"]: d for d in stored}
    merged = []
    for rule in trigger_rules:
        if rule.id in by_rule:
            merged.append(by_rule.pop(rule.id))
        elif rule.id in computed:
            d = computed[rule.id]
            merged.append({"rule": d.rule.id, "matched": d.matched, "reason": d.reason})
    merged.extend(by_rule.values())  # stored for a rule the version does not hold
    return merged
