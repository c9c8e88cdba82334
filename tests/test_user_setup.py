"""Rules' per-user settings (engine.rules.user_setup, the loader, the pipeline): what a user must
set, the submission form's text, the loader's errors, and skipping a user not set up."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from engine.cli import main
from engine.rules.user_setup import applying_rules, setup_fields, setup_instructions
from engine.runtime.pipeline import Pipeline
from engine.runtime.user_values import UserValues
from engine.secrets import Secrets
from tests.helpers import NOW, event, load_errors, load_ok, memory

RULES = """
- id: to-slack
  trigger: memory
  uids: [u1, u2]
  settings:
    - name: slack_webhook_url
      label: Slack webhook URL
      help: Apps > Incoming Webhooks
      type: url
      secret: true
    - {name: note, required: false}
  do:
    - slack:
        webhook_url: "{{ user.settings.slack_webhook_url }}"
        text: "{{ memory.structured.title }} {{ user.settings.note | default('') }}"
- id: to-home
  trigger: transcript
  settings:
    - {name: ha_url, type: url}
    - {name: ha_token, secret: true}
  do:
    - home_assistant:
        url: "{{ user.settings.ha_url }}"
        token: "{{ user.settings.ha_token }}"
        service: light.turn_on
"""


def test_fields_are_those_of_the_rules_that_apply_to_the_uid(tmp_path: Path) -> None:
    rules = load_ok(tmp_path, RULES)
    fields = setup_fields(applying_rules(rules, "u1", Secrets()))
    assert [(f.name, f.required, f.connectors) for f in fields] == [
        ("slack_webhook_url", True, ["slack"]),
        ("note", False, ["slack"]),
        ("ha_url", True, ["home_assistant"]),
        ("ha_token", True, ["home_assistant"]),
    ]
    others = setup_fields(applying_rules(rules, "u3", Secrets()))
    assert [f.name for f in others] == ["ha_url", "ha_token"]


def test_a_setting_several_rules_declare_is_one_field_secret_if_any_says_so(
    tmp_path: Path,
) -> None:
    rules = load_ok(
        tmp_path,
        """
        - id: a
          trigger: memory
          settings: [{name: key, label: Key, required: false}]
          do: [{log: {message: "{{ user.settings.key | default('') }}"}}]
        - id: b
          trigger: memory
          settings: [{name: key, label: Other label, secret: true}]
          do: [{log: {message: "{{ user.settings.key }}"}}]
        """,
    )
    (field,) = setup_fields(applying_rules(rules, "u1", Secrets()))
    assert (field.setting.label, field.required, field.secret) == ("Key", True, True)
    assert field.rules == ["a", "b"] and field.connectors == ["log"]


def test_setup_instructions_name_every_field_of_the_form(tmp_path: Path) -> None:
    load_ok(tmp_path, RULES)
    result = CliRunner().invoke(
        main, ["setup-instructions", "--rules", str(tmp_path), "--url", "https://omi.example/"]
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "  memory: https://omi.example/webhook/memory\n" in text
    assert "  transcript: https://omi.example/webhook/transcript\n" in text
    assert "audio" not in text.split("Setup Completed")[0]  # no rule takes audio
    assert "Setup Completed URL: https://omi.example/setup/completed\n" in text
    assert "Auth URL: https://omi.example/setup\n" in text
    assert "  - Slack webhook URL (secret, required)\n    Apps > Incoming Webhooks\n" in text
    assert "  - note (text, optional)\n" in text
    assert "  - ha_url (url, required)\n" in text


def test_nothing_to_set_up_says_so(tmp_path: Path) -> None:
    rules = load_ok(tmp_path, "id: plain\ntrigger: memory\ndo: [{log: {message: hi}}]\n")
    assert "Nothing to set up" in setup_instructions(rules, "https://x")


def test_a_template_reading_an_undeclared_setting_is_an_error(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: r
        trigger: memory
        settings:
          - {name: token, secret: true}
          - {name: token}
        do:
          - log: {message: "{{ user.settings.tokn }} {{ user.settings['other'] }}"}
        """,
    )
    assert [error.message for error in errors] == [
        "templates read user.settings.other, which the rule's `settings:` does not declare (token)",
        "templates read user.settings.tokn, which the rule's `settings:` does not declare (token)",
        "settings[1].name: 'token' is declared twice",
    ]


def test_a_user_without_a_required_setting_is_skipped_with_the_reason(tmp_path: Path) -> None:
    rules = load_ok(tmp_path, RULES)
    users = {
        "u1": UserValues("u1", {"slack_webhook_url": "https://hooks.slack.com/services/x1"}),
        "u2": UserValues("u2", {"note": "hi"}),
    }
    pipeline = Pipeline(rules, Secrets(), user_settings=users.__getitem__)
    done = pipeline.process(event("memory", memory(title="Standup"), uid="u1"), NOW)
    (action,) = done.actions
    assert action.request is not None
    assert action.request.url == "https://hooks.slack.com/services/x1"  # type: ignore[attr-defined]
    assert action.request.json == {"text": "Standup "}  # type: ignore[attr-defined]
    skipped = pipeline.process(event("memory", memory(title="Standup"), uid="u2"), NOW)
    assert skipped.actions == []
    (decision,) = skipped.decisions
    assert decision.reason == "user u2 has not set slack_webhook_url (setup)"
    assert decision.replayable is False


def test_a_dry_run_shows_each_setting_as_a_placeholder(tmp_path: Path) -> None:
    rules = load_ok(tmp_path, RULES)
    outcome = Pipeline(rules, Secrets(), dry_run=True).process(
        event("memory", memory(title="Standup"), uid="u1"), NOW
    )
    (action,) = outcome.actions
    assert action.request.url == "<secret:user.slack_webhook_url>"  # type: ignore[union-attr]
