"""Dry-run: what the rules would do with some payloads, sending nothing.

Several payload files are one stream in order (for `transcript`, calls of one session). Each
event yields a report shaped as DESIGN's contract: trigger, matched rules with the exact
requests (secrets masked), and skipped rules with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from engine.errors import PayloadError
from engine.rules.compiled import RuleSet
from engine.rules.loader import load_rules
from engine.runtime.payloads import Event, decode_event
from engine.runtime.pipeline import Outcome, Pipeline
from engine.secrets import Secrets


class ActionReport(Struct, omit_defaults=True):
    connector: str
    request: Any | UnsetType = UNSET
    error: str | UnsetType = UNSET


class MatchedReport(Struct, omit_defaults=True):
    rule: str
    actions: list[ActionReport]
    note: str | UnsetType = UNSET  # what a fired rule left out (for_each_limit)


class SkippedReport(Struct):
    rule: str
    reason: str


class EventReport(Struct):
    trigger: str
    matched: list[MatchedReport]
    skipped: list[SkippedReport]


def report(outcome: Outcome, secrets: Secrets) -> EventReport:
    """The dry-run view of one processed event (requests masked)."""
    by_rule: dict[str, list[ActionReport]] = {d.rule.id: [] for d in outcome.matched}
    notes = {d.rule.id: d.reason for d in outcome.matched}
    for action in outcome.actions:
        if action.request is not None:
            masked = secrets.mask(msgspec.to_builtins(action.request))
            by_rule[action.rule_id].append(ActionReport(action.connector, request=masked))
        else:
            by_rule[action.rule_id].append(
                ActionReport(action.connector, error=secrets.mask(action.error))
            )
    return EventReport(
        trigger=outcome.event.trigger,
        matched=[
            MatchedReport(rule, actions, note=notes[rule] if notes.get(rule) else UNSET)
            for rule, actions in by_rule.items()
        ],
        skipped=[SkippedReport(d.rule.id, d.reason) for d in outcome.skipped],
    )


def read_payload(
    path: str | os.PathLike[str], trigger: str, *, uid: str, session: str, sample_rate: int
) -> Event:
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        raise PayloadError(f"cannot read {path}: {exc.strerror}", trigger=trigger) from None
    try:
        return decode_event(trigger, body, uid=uid, session_id=session, sample_rate=sample_rate)
    except PayloadError as exc:
        raise PayloadError(f"{path}: {exc.reason}", trigger=trigger, status=exc.status) from None


def dry_run_events(
    events: Iterable[Event],
    rules: RuleSet,
    secrets: Secrets,
    *,
    data_dir: str = "data",
    allow_hosts: Sequence[str] = (),
) -> Iterator[EventReport]:
    pipeline = Pipeline(rules, secrets, dry_run=True, data_dir=data_dir, allow_hosts=allow_hosts)
    for event in events:
        yield report(pipeline.process(event), secrets)


def dry_run_files(
    trigger: str,
    payloads: list[str],
    *,
    rules_dir: str = "rules",
    uid: str = "user123",
    session: str = "",
    sample_rate: int = 8000,
    secrets: Secrets | None = None,
    rules: RuleSet | None = None,
    allow_hosts: Sequence[str] = (),
) -> Iterator[EventReport]:
    """Dry-run payload files of one trigger as one stream."""
    secrets = secrets or Secrets.load()
    rules = rules or load_rules(rules_dir)
    events = (
        read_payload(path, trigger, uid=uid, session=session, sample_rate=sample_rate)
        for path in payloads
    )
    yield from dry_run_events(events, rules, secrets, allow_hosts=allow_hosts)
