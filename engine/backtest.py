"""Backtest: what a version of the rules would have done with captured events, beside what
another version does (or what the server recorded when the events arrived).

Both sides run as serving would: the dry-run pipeline (engine.dryrun, requests masked), with
a rule whose secrets are unset skipped as the receiver skips it. A rule's result on an event
changes when it fires on one side only, or fires on both with other requests; a different
reason for not firing is no change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec
from msgspec import Struct

from engine.dryrun import EventReport, dry_run_events
from engine.rules.compiled import RuleSet
from engine.runtime.payloads import Event
from engine.secrets import Secrets
from engine.server import history
from engine.server.sealed import shown
from engine.server.statuses import ActionStatus
from engine.server.store import Store

ABSENT = "absent"  # the rule is not in that version (or was not decided then)


class RuleResult(Struct):
    """One rule on one event: fired (with its actions) or why not."""

    fired: bool
    reason: str = ""  # why it did not fire
    requests: list[dict[str, Any]] = msgspec.field(default_factory=list)  # ActionReport data

    @property
    def decision(self) -> str:
        return "fired" if self.fired else f"skipped: {self.reason}" if self.reason else ABSENT


class EventChange(Struct):
    """A rule whose result on an event differs between the two versions."""

    event_id: str
    trigger: str
    received_at: float
    uid: str
    rule: str
    before: str  # "fired" | "skipped: <reason>" | "absent"
    after: str
    requests_before: list[dict[str, Any]]  # [{connector, request} or {connector, error}]
    requests_after: list[dict[str, Any]]


class BacktestReport(Struct):
    events: int  # events replayed
    fired_before: int  # events on which a rule (only_rule: that rule) fired before
    fired_after: int
    events_changed: int  # distinct events in `changes`
    changes: list[EventChange]

    def text(self, before_label: str = "the saved version") -> str:
        """The report as a person reads it: the counts, then each change."""
        lines = [self.headline(before_label)]
        for change in self.changes:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(change.received_at))
            lines += ["", f"{when} {change.trigger} uid {change.uid} {change.event_id}"]
            lines.append(f"  {change.rule}: {change.before} → {change.after}")
            lines += request_diff(change.requests_before, change.requests_after)
        return "\n".join(lines)

    def headline(self, before_label: str = "the saved version") -> str:
        head = (
            f"Over the last {self.events} captured event(s) this version fires on "
            f"{self.fired_after}; {before_label} fired on {self.fired_before}; "
        )
        if not self.events_changed:
            return head + "no event changes"
        if self.events_changed == 1:
            return head + "this event changes"
        return head + f"these {self.events_changed} events change"


Progress = Callable[[], None]  # called after each event compared


def backtest_captured(
    store: Store,
    after: RuleSet,
    *,
    secrets: Secrets,
    before: RuleSet | None = None,
    since: float | None = None,
    limit: int = 500,
    only_rule: str | None = None,
    data_dir: str = "data",
    allow_hosts: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport:
    """The last `limit` captured events (from `since`) replayed: `after` against `before`,
    or, without `before`, against what the server recorded then. `progress(done, total)`
    follows a long run."""
    stored = history.count_captured(store, since=since)
    total, offset = min(stored, limit), max(0, stored - limit)
    events = history.captured_events(store, since=since, offset=offset)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    options: dict[str, Any] = {"secrets": secrets, "only_rule": only_rule, "progress": step}
    options.update(data_dir=data_dir, allow_hosts=allow_hosts)
    if before is not None:
        return backtest(events, before, after, **options)
    return backtest_saved(events, store, after, **options)


def backtest(
    events: Iterable[Event],
    before: RuleSet,
    after: RuleSet,
    *,
    secrets: Secrets,
    only_rule: str | None = None,
    data_dir: str = "data",
    allow_hosts: Sequence[str] = (),
    progress: Progress | None = None,
) -> BacktestReport:
    """Run `events` (oldest first) through both rule sets and compare each rule's result.
    With `only_rule`, only that rule is compared (the editor's candidate against the saved
    version: `after` may hold that one rule alone)."""
    replayed = list(events)
    before_results = served_results(replayed, before, secrets, data_dir, allow_hosts)
    after_results = served_results(replayed, after, secrets, data_dir, allow_hosts)
    return compare(replayed, before_results, after_results, only_rule=only_rule, progress=progress)


def backtest_saved(
    events: Iterable[Event],
    store: Store,
    after: RuleSet,
    *,
    secrets: Secrets,
    only_rule: str | None = None,
    data_dir: str = "data",
    allow_hosts: Sequence[str] = (),
    progress: Progress | None = None,
) -> BacktestReport:
    """Like `backtest`, with what the server recorded at receive time as the before side."""
    replayed = list(events)
    before_results = (saved_results(store, event.id) for event in replayed)
    after_results = served_results(replayed, after, secrets, data_dir, allow_hosts)
    return compare(replayed, before_results, after_results, only_rule=only_rule, progress=progress)


def served_results(
    events: Sequence[Event],
    rules: RuleSet,
    secrets: Secrets,
    data_dir: str = "data",
    allow_hosts: Sequence[str] = (),
) -> Iterator[dict[str, RuleResult]]:
    """Each event's results per rule, as serving would decide (unset secrets skip)."""
    reports = dry_run_events(events, rules, secrets, data_dir=data_dir, allow_hosts=allow_hosts)
    for report in reports:
        yield results_of(report, rules, secrets)


def results_of(report: EventReport, rules: RuleSet, secrets: Secrets) -> dict[str, RuleResult]:
    results = {s.rule: RuleResult(False, s.reason) for s in report.skipped}
    for matched in report.matched:
        rule = rules.get(matched.rule)
        missing = secrets.missing(rule.secrets) if rule else []
        if missing:  # the receiver skips it (dry-run alone shows placeholders)
            results[matched.rule] = RuleResult(False, f"secrets not set: {', '.join(missing)}")
        else:
            requests = [msgspec.to_builtins(action) for action in matched.actions]
            results[matched.rule] = RuleResult(True, requests=requests)
    return results


def saved_results(store: Store, event_id: str) -> dict[str, RuleResult]:
    """What the server recorded for one event: each rule's decision and its actions'
    requests (seals shown as `<secret:NAME>`, as a dry-run masks them)."""
    rows = store.query(
        "SELECT id, trigger, uid, session_id, received_at, params, body, decisions, "
        "rules_version FROM events WHERE id = ?",
        (event_id,),
    )
    if not rows:
        return {}
    decisions = history.decisions_of(store, rows[0])
    results = {
        d["rule"]: RuleResult(bool(d["matched"]), "" if d["matched"] else d["reason"])
        for d in decisions
    }
    for action in store.query(
        "SELECT rule_id, connector, status, request, last_error FROM actions "
        "WHERE event_id = ? ORDER BY id",
        (event_id,),
    ):
        result = results.setdefault(action["rule_id"], RuleResult(True))
        if action["status"] == ActionStatus.ERROR or action["request"] is None:
            result.requests.append(
                {"connector": action["connector"], "error": action["last_error"]}
            )
        else:
            request = shown(msgspec.json.decode(action["request"]))
            result.requests.append({"connector": action["connector"], "request": request})
    return results


def compare(
    events: Sequence[Event],
    before: Iterable[dict[str, RuleResult]],
    after: Iterable[dict[str, RuleResult]],
    *,
    only_rule: str | None = None,
    progress: Progress | None = None,
) -> BacktestReport:
    fired_before = fired_after = 0
    changes: list[EventChange] = []
    for event, old, new in zip(events, before, after, strict=True):
        if only_rule is not None:
            old = {k: v for k, v in old.items() if k == only_rule}
            new = {k: v for k, v in new.items() if k == only_rule}
        fired_before += any(result.fired for result in old.values())
        fired_after += any(result.fired for result in new.values())
        for rule in sorted(old.keys() | new.keys()):
            was = old.get(rule, RuleResult(False))
            now = new.get(rule, RuleResult(False))
            if was.fired == now.fired and (not now.fired or was.requests == now.requests):
                continue
            changes.append(
                EventChange(
                    event_id=event.id,
                    trigger=event.trigger,
                    received_at=event.received_at,
                    uid=event.uid,
                    rule=rule,
                    before=was.decision,
                    after=now.decision,
                    requests_before=was.requests,
                    requests_after=now.requests,
                )
            )
        if progress:
            progress()
    return BacktestReport(
        events=len(events),
        fired_before=fired_before,
        fired_after=fired_after,
        events_changed=len({change.event_id for change in changes}),
        changes=changes,
    )


def request_diff(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """The requests that differ, `-` before and `+` after, one JSON line each."""
    lines = []
    for index in range(max(len(before), len(after))):
        old = before[index] if index < len(before) else None
        new = after[index] if index < len(after) else None
        if old == new:
            continue
        if old is not None:
            lines.append(f"    - {_one_line(old)}")
        if new is not None:
            lines.append(f"    + {_one_line(new)}")
    return lines


def _one_line(action: dict[str, Any]) -> str:
    body = action.get("request", {"error": action.get("error")})
    return f"{action.get('connector')}: {json.dumps(body, ensure_ascii=False, sort_keys=True)}"
