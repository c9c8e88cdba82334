"""Which rules fire for an event: enabled, uids, secrets, for_each, and the order of checks."""

from __future__ import annotations

from pathlib import Path

from engine.secrets import Secrets
from tests.helpers import decision, event, load_ok, memory, pipeline, run

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
