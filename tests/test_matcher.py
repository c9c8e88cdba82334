"""Which rules fire for an event: enabled, uids, secrets, for_each, and the order of checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from engine.dryrun import dry_run_events
from engine.runtime.limits import Limits
from engine.runtime.pipeline import Pipeline
from engine.secrets import Secrets
from tests.helpers import decision, event, load_ok, memory, pipeline, run
from tests.server_helpers import LiveServer, server_settings, write_rules

RULES = """
- id: everyone
  trigger: memory
  do: [{log: {}}]
- id: disabled
  trigger: memory
  enabled: false
  do: [{log: {}}]
- id: only-alice
  trigger: memory
  uids: [alice]
  do: [{log: {}}]
- id: per-item
  trigger: memory
  for_each: $.structured.action_items[?(@.completed == false)]
  do:
    - notify:
        message: "{{ item.description }}"
- id: needs-secret
  trigger: memory
  do:
    - http:
        url: "{{ secrets.HOOK_URL }}"
- id: transcript-only
  trigger: transcript
  do: [{log: {}}]
"""


def test_enabled_false_is_skipped_with_a_reason(tmp_path: Path) -> None:
    outcome = run(load_ok(tmp_path, RULES), event("memory", memory()))
    off = decision(outcome, "disabled")
    assert (off.matched, off.reason) == (False, "disabled (enabled: false)")


def test_uids_limit_who_a_rule_is_for(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, RULES)
    bob = decision(run(ruleset, event("memory", memory(), uid="bob")), "only-alice")
    assert (bob.matched, bob.reason) == (False, "uid 'bob' is not in uids")
    alice = decision(run(ruleset, event("memory", memory(), uid="alice")), "only-alice")
    assert alice.matched is True


def test_only_rules_of_the_event_trigger_are_decided(tmp_path: Path) -> None:
    outcome = run(load_ok(tmp_path, RULES), event("memory", memory()))
    assert "transcript-only" not in {d.rule.id for d in outcome.decisions}


def test_for_each_runs_the_actions_once_per_item(tmp_path: Path) -> None:
    doc = memory(
        action_items=[
            {"description": "one", "completed": False},
            {"description": "done", "completed": True},
            {"description": "two", "completed": False},
        ]
    )
    outcome = run(load_ok(tmp_path, RULES), event("memory", doc))
    assert decision(outcome, "per-item").items == [
        {"description": "one", "completed": False},
        {"description": "two", "completed": False},
    ]
    planned = [a for a in outcome.actions if a.rule_id == "per-item"]
    assert [(a.item_index, a.request.message) for a in planned] == [(0, "one"), (1, "two")]
    assert [a.key_suffix for a in planned] == ["per-item:0:0", "per-item:0:1"]


def test_for_each_selecting_nothing_skips_the_rule(tmp_path: Path) -> None:
    doc = memory(action_items=[{"description": "done", "completed": True}])
    outcome = run(load_ok(tmp_path, RULES), event("memory", doc))
    per_item = decision(outcome, "per-item")
    assert (per_item.matched, per_item.reason) == (
        False,
        "for_each $.structured.action_items[?(@.completed == false)] selected nothing",
    )
    assert not [a for a in outcome.actions if a.rule_id == "per-item"]


def test_unset_secrets_skip_a_rule_when_serving_but_not_in_dry_run(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, RULES)
    serving = pipeline(ruleset, dry_run=False).process(event("memory", memory()), now=0.0)
    assert decision(serving, "needs-secret").reason == "secrets not set: HOOK_URL"
    assert decision(run(ruleset, event("memory", memory())), "needs-secret").matched is True
    with_secret = pipeline(ruleset, Secrets({"HOOK_URL": "https://hooks.test/x"}), dry_run=False)
    outcome = with_secret.process(event("memory", memory()), now=0.0)
    assert decision(outcome, "needs-secret").matched is True
    (request,) = [a.request for a in outcome.actions if a.rule_id == "needs-secret"]
    assert request.url == "https://hooks.test/x"


def test_disabled_is_checked_before_conditions(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: r
        trigger: memory
        enabled: false
        uids: [nobody]
        when:
          - path: $.nope
            exists: true
        do: [{log: {}}]
        """,
    )
    assert decision(run(ruleset, event("memory", memory())), "r").reason == (
        "disabled (enabled: false)"
    )


# -- for_each_limit ---------------------------------------------------------------------------

FAN_OUT = """
- id: default-limit
  trigger: memory
  for_each: $.structured.action_items[*]
  do: [{log: {message: "{{ item.description }}"}}]
- id: own-limit
  trigger: memory
  for_each: $.structured.action_items[*]
  for_each_limit: 3
  do: [{log: {message: "{{ item.description }}"}}]
"""


def many_items(count: int) -> dict[str, Any]:
    items = [{"description": f"task {i}", "completed": False} for i in range(count)]
    return memory(action_items=items)


def test_for_each_acts_on_at_most_its_limit_and_says_what_it_left_out(tmp_path: Path) -> None:
    outcome = run(load_ok(tmp_path, FAN_OUT), event("memory", many_items(120)))
    per_rule = Counter(action.rule_id for action in outcome.actions)
    assert per_rule == {"default-limit": 50, "own-limit": 3}
    assert decision(outcome, "default-limit").reason == (
        "for_each selected 120 items; acting on the first 50 (for_each_limit)"
    )
    assert decision(outcome, "own-limit").reason == (
        "for_each selected 120 items; acting on the first 3 (for_each_limit)"
    )
    first = [a.request.line for a in outcome.actions if a.rule_id == "own-limit"]
    assert ['"message":"task 0"' in first[0], '"message":"task 2"' in first[2]] == [True, True]


def test_for_each_under_its_limit_has_no_note(tmp_path: Path) -> None:
    outcome = run(load_ok(tmp_path, FAN_OUT), event("memory", many_items(3)))
    assert decision(outcome, "own-limit").reason == ""
    assert len(outcome.actions) == 6


def test_the_default_for_each_limit_is_a_setting(tmp_path: Path) -> None:
    runner = Pipeline(
        load_ok(tmp_path, FAN_OUT), Secrets({}), dry_run=True, limits=Limits(for_each_limit=7)
    )
    outcome = runner.process(event("memory", many_items(20)))
    assert Counter(a.rule_id for a in outcome.actions) == {"default-limit": 7, "own-limit": 3}


def test_dry_run_reports_the_for_each_note(tmp_path: Path) -> None:
    (report,) = dry_run_events(
        [event("memory", many_items(60))], load_ok(tmp_path, FAN_OUT), Secrets({})
    )
    notes = {matched.rule: matched.note for matched in report.matched}
    assert (
        notes["default-limit"]
        == "for_each selected 60 items; acting on the first 50 (for_each_limit)"
    )


def test_a_memory_with_45000_items_over_http_makes_50_actions(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
        - id: tasks
          trigger: memory
          for_each: $.structured.action_items[?(@.completed == false)]
          do: [{log: {message: "{{ item.description }}"}}]
        """,
    )
    items = [{"description": str(i), "completed": False} for i in range(45_000)]
    body = memory(action_items=items)
    with LiveServer(settings) as server:
        answer = httpx.post(server.url + "/webhook/memory?uid=u", json=body, timeout=60)
        assert answer.status_code == 200
        store = server.receiver.store
        (row,) = store.query("SELECT decisions FROM events")
        (tasks,) = json.loads(row["decisions"])
        assert tasks == {
            "rule": "tasks",
            "matched": True,
            "reason": "for_each selected 45000 items; acting on the first 50 (for_each_limit)",
        }
        assert store.query("SELECT COUNT(*) AS n FROM actions")[0]["n"] == 50


# -- time budgets -----------------------------------------------------------------------------

BUDGETED = """
- id: first
  trigger: memory
  when:
    - path: $.structured.category
      equals: work
  do: [{log: {}}]
- id: second
  trigger: memory
  do: [{log: {}}]
"""


def test_a_rule_over_its_matching_budget_is_skipped_with_a_reason(tmp_path: Path) -> None:
    limits = Limits(match_budget_ms=0)
    runner = Pipeline(load_ok(tmp_path, BUDGETED), Secrets({}), dry_run=True, limits=limits)
    outcome = runner.process(event("memory", memory()))
    for rule in ("first", "second"):
        assert decision(outcome, rule).reason == (
            "skipped: matching took longer than 0 ms (match_budget_ms)"
        )
    assert outcome.actions == []


def test_rules_after_the_event_budget_is_spent_are_skipped(tmp_path: Path) -> None:
    ticks = iter(range(1_000_000))

    def clock() -> float:  # each reading is 100 ms after the last
        return next(ticks) / 10

    limits = Limits(match_budget_ms=10_000, event_budget_ms=450)  # four readings: rule one
    ruleset = load_ok(tmp_path, BUDGETED)
    outcome = Pipeline(ruleset, Secrets({}), dry_run=True, limits=limits, clock=clock).process(
        event("memory", memory())
    )
    reason = "skipped: this event's matching took longer than 450 ms (event_budget_ms)"
    assert [decision(outcome, "first").matched, decision(outcome, "second").reason] == [
        True,
        reason,
    ]


def test_a_bug_in_one_rules_matching_skips_that_rule_only(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, BUDGETED)

    class Broken:
        def check(self, view: Any) -> Any:
            raise KeyError("boom")

    ruleset.rules[0].predicate = Broken()  # type: ignore[assignment]
    outcome = run(ruleset, event("memory", memory()))
    assert decision(outcome, "first").reason == "matching failed: KeyError: 'boom'"
    assert decision(outcome, "second").matched


def test_the_budget_setting_reaches_the_server(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, match_budget_ms=0)
    write_rules(Path(settings.rules), BUDGETED)
    with LiveServer(settings) as server:
        answer = httpx.post(server.url + "/webhook/memory?uid=u", json=memory(), timeout=30)
        assert answer.status_code == 200
        (row,) = server.receiver.store.query("SELECT decisions FROM events")
        reasons = {d["rule"]: d["reason"] for d in json.loads(row["decisions"])}
        assert reasons == {
            "first": "skipped: matching took longer than 0 ms (match_budget_ms)",
            "second": "skipped: matching took longer than 0 ms (match_budget_ms)",
        }
