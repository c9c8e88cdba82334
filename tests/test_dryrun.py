"""Dry-run of every sample payload against the shipped rules, through the real command line:
exactly the requests that would be sent, secrets masked, and nothing sent."""

from __future__ import annotations

import email
import json
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.dryrun import EventReport, dry_run_files
from engine.samples import SAMPLES
from engine.secrets import Secrets
from tests.conftest import RULES_DIR, fixture_path
from tests.helpers import write_rule

# every fixture file, and how it is dry-run (the transcript calls are one stream)
RUNS: dict[str, tuple[str, list[str], list[str]]] = {
    "memory-work": ("memory", ["memory-work.json"], []),
    "memory-personal-discarded": ("memory", ["memory-personal-discarded.json"], []),
    "memory-extra-fields": ("memory", ["memory-extra-fields.json"], []),
    "memory-backend-shape": ("memory", ["memory-backend-shape.json"], []),
    "transcript-stream": (
        "transcript",
        ["transcript-call-1.json", "transcript-call-2.json", "transcript-call-3.json"],
        ["--session", "sess_4b91"],
    ),
    "transcript-app-shape": ("transcript", ["transcript-app-shape.json"], []),
    "day-summary": ("day_summary", ["day-summary.json"], []),
    "day-summary-legacy": ("day_summary", ["day-summary-legacy.json"], []),
    "audio-speech": ("audio", ["audio-speech-16k.pcm"], ["--sample-rate", "16000"]),
    "audio-silence": ("audio", ["audio-silence-16k.pcm"], ["--sample-rate", "16000"]),
    "session-end": ("transcript_session_end", ["session-end.json"], []),
    "speech-start": ("audio_speech_start", ["speech-start.json"], []),
    "speech-end": ("audio_speech_end", ["speech-end.json"], []),
}


def dry_run(
    trigger: str, files: list[str], *extra: str, rules: Path = RULES_DIR
) -> list[dict[str, Any]]:
    """Run `omi-rules dry-run --json`; one parsed report per event."""
    args = ["dry-run", "--trigger", trigger, "--rules", str(rules), "--json", *extra]
    for name in files:
        args += ["--payload", str(fixture_path(name))]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(files)
    return [json.loads(line) for line in lines]


def run_fixture(key: str) -> list[dict[str, Any]]:
    trigger, files, extra = RUNS[key]
    return dry_run(trigger, files, *extra)


def matched(report: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    """The actions of a matched rule (fails when it did not match)."""
    (found,) = [m for m in report["matched"] if m["rule"] == rule]
    return found["actions"]


def skipped(report: dict[str, Any]) -> dict[str, str]:
    return {s["rule"]: s["reason"] for s in report["skipped"]}


def fired(report: dict[str, Any]) -> set[str]:
    return {m["rule"] for m in report["matched"]}


def test_every_fixture_file_is_dry_run_here() -> None:
    covered = {name for _, files, _ in RUNS.values() for name in files}
    assert covered == set(SAMPLES)


@pytest.mark.parametrize("key", sorted(RUNS))
def test_every_report_has_the_contract_shape(key: str) -> None:
    for report in run_fixture(key):
        assert set(report) == {"trigger", "matched", "skipped"}
        assert report["trigger"] == RUNS[key][0]
        for rule in report["matched"]:
            assert set(rule) == {"rule", "actions"}
            for action in rule["actions"]:
                assert set(action) in ({"connector", "request"}, {"connector", "error"})
        for rule in report["skipped"]:
            assert set(rule) == {"rule", "reason"} and rule["reason"]


def test_speech_end_names_the_utterance_file_it_will_send(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "asr.yaml").write_text(
        "id: asr\ntrigger: audio_speech_end\ndo:\n"
        "  - http: {url: 'http://127.0.0.1:9/asr', body_audio: utterance, multipart: {}}\n"
    )
    (report,) = dry_run("audio_speech_end", ["speech-end.json"], rules=rules)
    (action,) = matched(report, "asr")
    assert action["request"]["audio"] == {
        "source": "file",
        "ref": "data/audio/utterances/user123/stream-20251126T000000Z-1.wav",
        "sample_rate": 16000,
        "field": "file",
    }


def test_session_end_logs_the_whole_conversation() -> None:
    (report,) = run_fixture("session-end")
    assert fired(report) == {"log-conversation-end"}
    (log,) = matched(report, "log-conversation-end")
    line = json.loads(log["request"]["line"])
    assert line["message"]["session"] == "s1"
    assert line["message"]["said"].splitlines()[2:4] == [
        "You: hey omi please turn on the",
        "You: lights in the living room.",
    ]


def test_memory_work() -> None:
    (report,) = run_fixture("memory-work")
    (slack,) = matched(report, "work-to-slack")
    assert slack["connector"] == "slack"
    assert slack["request"]["method"] == "POST"
    assert slack["request"]["url"] == "<secret:SLACK_WEBHOOK_URL>"
    assert slack["request"]["json"]["text"] == (
        "📘 *Onboarding Guide Review* (2m 30s)\n"
        "Priya and the user went through the onboarding guide and split the remaining work.\n"
        "- Take the onboarding screenshots\n"
        "- Ask Marco to proofread the guide"
    )
    notion = matched(report, "action-items-to-notion")
    assert [a["connector"] for a in notion] == ["notion", "notion"]
    titles = [
        a["request"]["json"]["properties"]["Name"]["title"][0]["text"]["content"] for a in notion
    ]
    assert titles == ["Take the onboarding screenshots", "Ask Marco to proofread the guide"]
    assert {a["request"]["headers"]["Authorization"] for a in notion} == {
        "Bearer <secret:NOTION_TOKEN>"
    }
    assert notion[0]["request"]["json"]["parent"] == {"database_id": "<secret:NOTION_TASKS_DB>"}
    assert skipped(report) == {
        "personal-to-webhook": (
            "when[0]: $.structured.category is 'work', not in ['personal', 'health', 'family']"
        ),
        "published-slack": "disabled (enabled: false)",  # rules/published-app.yaml
        "published-notion": "disabled (enabled: false)",
    }
    (log,) = matched(report, "log-memories")
    assert json.loads(log["request"]["line"])["message"] == {
        "title": "Onboarding Guide Review",
        "category": "work",
        "open_action_items": "2",
    }


def test_memory_personal_discarded() -> None:
    (report,) = run_fixture("memory-personal-discarded")
    assert fired(report) == {"log-memories"}
    assert skipped(report) == {
        "work-to-slack": "when[0]: $.structured.category is 'other', not in ['work', 'business']",
        "action-items-to-notion": "when[0]: $.discarded is True, not equal to False",
        "personal-to-webhook": (
            "when[0]: $.structured.category is 'other', not in ['personal', 'health', 'family']"
        ),
        "published-slack": "disabled (enabled: false)",
        "published-notion": "disabled (enabled: false)",
    }


def test_memory_extra_fields_goes_to_the_personal_webhook() -> None:
    (report,) = run_fixture("memory-extra-fields")
    (http,) = matched(report, "personal-to-webhook")
    assert http["request"]["url"] == "<secret:PERSONAL_WEBHOOK_URL>"
    assert http["request"]["json"] == {
        "title": "Weekend to-dos",
        "overview": "Passport renewal and bike repairs.",
        "transcript": (
            "You: Remind me to renew the passport before July.\n"
            "You: And the bike needs new brake pads."
        ),
    }
    assert len(matched(report, "action-items-to-notion")) == 2
    assert "work-to-slack" in skipped(report)


def test_memory_backend_shape() -> None:
    (report,) = run_fixture("memory-backend-shape")
    (slack,) = matched(report, "work-to-slack")
    assert slack["request"]["json"]["text"].startswith("💶 *Budget review* (20m 15s)\n")
    (notion,) = matched(report, "action-items-to-notion")
    properties = notion["request"]["json"]["properties"]
    assert (
        properties["Name"]["title"][0]["text"]["content"]
        == "Update the budget spreadsheet by Monday"
    )


def test_transcript_stream_fires_lights_on_exactly_once_on_call_two() -> None:
    calls = run_fixture("transcript-stream")
    assert ["lights-on" in fired(call) for call in calls] == [False, True, False]
    assert skipped(calls[0])["lights-on"] == (
        "when[0]: no new speech by user says 'turn on the lights', 'lights on'"
    )
    assert skipped(calls[2])["lights-on"] == (
        "when[0]: no new speech by user says 'turn on the lights', 'lights on'"
    )
    home_assistant, notify = matched(calls[1], "lights-on")
    assert home_assistant["request"]["url"] == "<secret:HA_URL>/api/services/light/turn_on"
    assert home_assistant["request"]["json"] == {"entity_id": "light.kitchen"}
    assert home_assistant["request"]["headers"]["Authorization"] == "Bearer <secret:HA_TOKEN>"
    assert notify == {
        "connector": "notify",
        "request": {"message": "Turning on the lights (turn on the lights)"},
    }
    # "remind me" is said once, in call 2; call 3 sends that segment again
    assert ["remind-me" in fired(call) for call in calls] == [False, True, False]
    assert matched(calls[1], "remind-me")[0]["request"]["message"] == (
        "Noted: water the plants tonight"
    )
    (log,) = matched(calls[2], "log-transcripts")
    assert json.loads(log["request"]["line"])["message"] == (
        "You: Oh, and remind me to water the plants tonight.\nSpeaker 1: The lamp is on now."
    )


def test_transcript_app_shape_is_only_the_first_call() -> None:
    (report,) = run_fixture("transcript-app-shape")
    assert fired(report) == {"log-transcripts"}
    assert set(skipped(report)) == {"lights-on", "remind-me", "published-lights"}


def summary_email(report: dict[str, Any]) -> email.message.EmailMessage:
    (action,) = matched(report, "day-summary-email")
    return email.message_from_string(action["request"]["message"], policy=default_policy)


@pytest.mark.parametrize("key", ["day-summary", "day-summary-legacy"])
def test_day_summary_email_gets_the_headline(key: str) -> None:
    (report,) = run_fixture(key)
    message = summary_email(report)
    assert message["Subject"] == "🧭 Steady day of reviews and errands"
    assert message["To"] == "SUMMARY_EMAIL_TO@unset-secret.invalid"
    text, html = (part.get_content() for part in message.iter_parts())
    assert "- Take the onboarding screenshots\n- Water the plants" in text
    assert "- Cut the travel budget by ten percent" in text
    assert "<li>Water the plants</li>" in html
    (log,) = matched(report, "log-day-summaries")
    assert json.loads(log["request"]["line"])["message"] == "Steady day of reviews and errands"


def test_legacy_day_summary_sends_the_same_email_as_the_modern_one() -> None:
    (modern,) = run_fixture("day-summary")
    (legacy,) = run_fixture("day-summary-legacy")

    def parts(report: dict[str, Any]) -> list[tuple[str, str]]:
        message = summary_email(report)
        headers = [(k, str(v)) for k, v in message.items() if k != "Content-Type"]
        return headers + [(p.get_content_type(), p.get_content()) for p in message.iter_parts()]

    assert parts(legacy) == parts(modern)


def test_audio_speech_is_recorded_and_silence_is_not() -> None:
    (speech,) = run_fixture("audio-speech")
    (record,) = matched(speech, "record-audio")
    assert record["request"]["sample_rate"] == 16000
    assert record["request"]["bytes"] == 132970
    assert record["request"]["path"].startswith("data/recordings/user123/")
    assert record["request"]["path"].endswith(".wav")
    assert "skip" not in record["request"]
    (silence,) = run_fixture("audio-silence")  # speech_only: the action says why not
    (kept,) = matched(silence, "record-audio")
    assert kept["request"]["skip"] == "no speech (speech_only)"


def test_secret_from_the_environment_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = "https://hooks.slack.com/services/T000/B000/raw-secret-value"
    monkeypatch.setenv("OMI_RULES_SECRET_SLACK_WEBHOOK_URL", raw)
    monkeypatch.setenv("OMI_RULES_SECRET_NOTION_TOKEN", "secret_notion_abc")
    args = ["dry-run", "--trigger", "memory", "--rules", str(RULES_DIR), "--json"]
    args += ["--payload", str(fixture_path("memory-work.json"))]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "raw-secret-value" not in result.output
    assert "secret_notion_abc" not in result.output
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert matched(report, "work-to-slack")[0]["request"]["url"] == "<secret:SLACK_WEBHOOK_URL>"
    notion = matched(report, "action-items-to-notion")[0]["request"]
    assert notion["headers"]["Authorization"] == "Bearer <secret:NOTION_TOKEN>"


def test_secrets_file_values_are_masked_too(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("HA_URL: http://192.168.1.20:8123\nHA_TOKEN: long-lived-token\n")
    args = ["dry-run", "--trigger", "transcript", "--rules", str(RULES_DIR), "--json"]
    args += ["--secrets", str(secrets)]
    for name in RUNS["transcript-stream"][1]:
        args += ["--payload", str(fixture_path(name))]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "long-lived-token" not in result.output and "192.168.1.20" not in result.output
    call_two = json.loads(result.stdout.splitlines()[1])
    request = matched(call_two, "lights-on")[0]["request"]
    assert request["url"] == "<secret:HA_URL>/api/services/light/turn_on"
    assert request["headers"]["Authorization"] == "Bearer <secret:HA_TOKEN>"


def test_a_template_error_is_the_actions_error(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        """
        id: broken-template
        trigger: memory
        do:
          - notify:
              message: "{{ memory.structured.nope }}"
          - notify:
              message: "{{ memory.structured.title }}"
        """,
    )
    (report,) = dry_run("memory", ["memory-work.json"], rules=tmp_path)
    assert report["matched"] == [
        {
            "rule": "broken-template",
            "actions": [
                {
                    "connector": "notify",
                    "error": "do[0].notify.message: 'dict object' has no attribute 'nope'",
                },
                {"connector": "notify", "request": {"message": "Onboarding Guide Review"}},
            ],
        }
    ]


def test_uid_option_reaches_the_rules(tmp_path: Path) -> None:
    write_rule(tmp_path, "id: alice-only\ntrigger: memory\nuids: [alice]\ndo: [{log: {}}]\n")
    (default,) = dry_run("memory", ["memory-work.json"], rules=tmp_path)
    assert skipped(default) == {"alice-only": "uid 'user123' is not in uids"}
    (alice,) = dry_run("memory", ["memory-work.json"], "--uid", "alice", rules=tmp_path)
    assert fired(alice) == {"alice-only"}


def test_nothing_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for trigger, files, extra in RUNS.values():
        args = ["dry-run", "--trigger", trigger, "--rules", str(RULES_DIR), *extra]
        for name in files:
            args += ["--payload", str(fixture_path(name))]
        assert runner.invoke(main, args, catch_exceptions=False).exit_code == 0
    # the log and record rules matched, yet no file was written
    assert list(tmp_path.iterdir()) == []


def test_dry_run_files_is_the_engine_function_behind_the_command() -> None:
    reports = list(
        dry_run_files(
            "transcript",
            [str(fixture_path(name)) for name in RUNS["transcript-stream"][1]],
            rules_dir=str(RULES_DIR),
            secrets=Secrets({"HA_TOKEN": "tok-123456"}),
        )
    )
    assert all(isinstance(report, EventReport) for report in reports)
    assert ["lights-on" in {m.rule for m in r.matched} for r in reports] == [False, True, False]
    (lights,) = [m for m in reports[1].matched if m.rule == "lights-on"]
    assert lights.actions[0].request["headers"]["Authorization"] == "Bearer <secret:HA_TOKEN>"
