"""The command line, through click's runner against `engine.cli.main`: validate, dry-run's
edges (the fixtures themselves are in test_dryrun.py) and schema."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli import main
from engine.rules.loader import load_rules
from engine.rules.schema import rule_file_schema
from engine.samples import SAMPLES, SAMPLES_DIR
from tests.conftest import ROOT, RULES_DIR, fixture_path
from tests.helpers import write_rule


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# one file per mistake: (file name, content, line:col, message as printed)
TEN_MISTAKES = [
    (
        "01-syntax.yaml",
        'id: a\ntrigger: memory\ndo:\n  - log: {message: "x"\n',
        "5:1",
        "YAML syntax: while parsing a flow mapping, expected ',' or '}', but got '<stream end>'",
    ),
    (
        "02-duplicate-key.yaml",
        "id: b\ntrigger: memory\ntrigger: memory\ndo: [{log: {}}]\n",
        "3:1",
        "duplicate key 'trigger'",
    ),
    (
        "03-typo.yaml",
        "id: c\ntrigerr: memory\ndo: [{log: {}}]\n",
        "2:1",
        "rule c: unknown key 'trigerr' (did you mean 'trigger'?)",
    ),
    (
        "04-on.yaml",
        "id: d\non: memory\ndo: [{log: {}}]\n",
        "2:1",
        "rule d: unknown key 'on' (a bare `on:` is read as true by YAML; write `trigger:`)",
    ),
    (
        "05-trigger.yaml",
        "id: e\ntrigger: memroy\ndo: [{log: {}}]\n",
        "2:10",
        "rule e: trigger: unknown value 'memroy' (did you mean 'memory'?); "
        "expected one of memory, transcript, audio, day_summary, transcript_session_end, "
        "audio_speech_start, audio_speech_end",
    ),
    (
        "06-connector.yaml",
        "id: f\ntrigger: memory\ndo:\n  - slak: {text: hi}\n",
        "4:5",
        "rule f: unknown connector 'slak' (did you mean 'slack'?); "
        "known: email, home_assistant, http, log, notify, notion, omi, record, slack",
    ),
    (
        "07-jsonpath.yaml",
        "id: g\ntrigger: memory\nwhen:\n  - path: $.a[\ndo: [{log: {}}]\n",
        "4:11",
        "rule g: path: JSONPath '$.a[' does not parse: Parse error near the end of string!",
    ),
    (
        "08-template.yaml",
        'id: h\ntrigger: transcript\ndo:\n  - notify:\n      message: "{{ memory.id }}"\n',
        "5:16",
        "rule h: do[0].notify.message: template uses 'memory', which a transcript rule "
        "does not have (it has segments, session and event)",
    ),
    (
        "09-regex.yaml",
        'id: i\ntrigger: memory\nwhen:\n  - path: $.a\n    matches: "("\ndo: [{log: {}}]\n',
        "5:14",
        "rule i: matches: bad regular expression: missing ), unterminated subpattern at position 0",
    ),
    (
        "10-cooldown.yaml",
        "id: j\ntrigger: transcript\ncooldown: soon\ndo: [{log: {}}]\n",
        "3:11",
        "rule j: cooldown: 'soon' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)",
    ),
]


def test_validate_reports_ten_mistakes_with_file_and_line(tmp_path: Path) -> None:
    for name, text, _, _ in TEN_MISTAKES:
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = invoke("validate", "--rules", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    expected = [
        f"{os.path.relpath(tmp_path / name)}:{where}: {message}"
        for name, _, where, message in TEN_MISTAKES
    ]
    assert result.stderr.splitlines() == [
        *expected,
        "10 error(s) in 10 file(s); 0 rule(s) valid",
    ]


def test_validate_the_shipped_rules() -> None:
    ruleset = load_rules(RULES_DIR)
    result = invoke("validate", "--rules", str(RULES_DIR))
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"ok: {len(ruleset.rules)} rule(s) in {len(ruleset.files)} file(s) are valid"
    ]
    assert re.fullmatch(r"ok: \d+ rule\(s\) in \d+ file\(s\) are valid\n", result.stdout)


def test_validate_notes_rules_whose_secrets_are_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_rule(
        tmp_path,
        """
        id: hook
        trigger: memory
        do:
          - http:
              url: "{{ secrets.HOOK_URL }}"
        """,
    )
    unset = invoke("validate", "--rules", str(tmp_path))
    assert unset.exit_code == 0
    assert unset.stderr == (
        f"note: {os.path.relpath(path)}:1: rule hook: will be skipped while these secrets "
        "are unset: HOOK_URL\n"
    )
    monkeypatch.setenv("OMI_RULES_SECRET_HOOK_URL", "https://hooks.test/x")
    set_ = invoke("validate", "--rules", str(tmp_path))
    assert (set_.exit_code, set_.stderr) == (0, "")
    assert set_.stdout == "ok: 1 rule(s) in 1 file(s) are valid\n"


def test_validate_keeps_good_rules_beside_broken_ones(tmp_path: Path) -> None:
    write_rule(tmp_path, "id: good\ntrigger: memory\ndo: [{log: {}}]\n", "good.yaml")
    write_rule(tmp_path, "id: bad\ntrigger: memory\n", "bad.yaml")
    result = invoke("validate", "--rules", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "1 error(s) in 2 file(s); 1 rule(s) valid"


def test_validate_a_missing_folder(tmp_path: Path) -> None:
    result = invoke("validate", "--rules", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"<rules>: rules folder {os.path.relpath(tmp_path / 'nope')} does not exist"
    )


def test_dry_run_needs_a_trigger_and_a_payload() -> None:
    result = invoke("dry-run", "--rules", str(RULES_DIR))
    assert result.exit_code == 2
    assert "give --trigger and at least one --payload" in result.stderr


def test_dry_run_of_a_bad_payload_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = invoke(
        "dry-run", "--trigger", "memory", "--payload", str(bad), "--rules", str(RULES_DIR)
    )
    assert result.exit_code == 2
    assert result.stderr == (f"error: memory payload: {bad}: not JSON (Input data was truncated)\n")


def test_dry_run_of_a_missing_payload_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    args = ("dry-run", "--trigger", "memory", "--payload", str(missing), "--rules", str(RULES_DIR))
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: memory payload: cannot read {missing}: No such file or directory\n"
    )


def test_dry_run_reports_broken_rules_and_runs_the_good_ones(tmp_path: Path) -> None:
    write_rule(tmp_path, "id: good\ntrigger: memory\ndo: [{notify: {message: hi}}]\n", "a.yaml")
    bad = write_rule(tmp_path, "id: bad\ntrigger: memroy\ndo: [{log: {}}]\n", "b.yaml")
    payload = str(fixture_path("memory-work.json"))
    result = invoke(
        "dry-run", "--trigger", "memory", "--payload", payload, "--rules", str(tmp_path), "--json"
    )
    assert result.exit_code == 0
    assert result.stderr.startswith(f"{os.path.relpath(bad)}:2:10: rule bad: trigger: unknown")
    assert json.loads(result.stdout) == {
        "trigger": "memory",
        "matched": [
            {"rule": "good", "actions": [{"connector": "notify", "request": {"message": "hi"}}]}
        ],
        "skipped": [],
    }


def test_dry_run_text_report() -> None:
    payload = str(fixture_path("memory-personal-discarded.json"))
    result = invoke(
        "dry-run", "--trigger", "memory", "--payload", payload, "--rules", str(RULES_DIR)
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{payload} (memory): 1 matched, 5 skipped"  # 2 of them disabled
    assert "  ✔ log-memories: 1 action(s)" in lines
    assert "  · action-items-to-notion: when[0]: $.discarded is True, not equal to False" in lines


def test_dry_run_text_report_shows_requests_and_errors(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        """
        id: show
        trigger: memory
        do:
          - http:
              url: "https://hooks.test/{{ memory.id }}"
              headers: {X-Token: "{{ secrets.TOKEN }}"}
              json: {title: "{{ memory.structured.title }}"}
          - notify:
              message: "{{ memory.nope }}"
        """,
    )
    payload = str(fixture_path("memory-work.json"))
    result = invoke(
        "dry-run", "--trigger", "memory", "--payload", payload, "--rules", str(tmp_path)
    )
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "    → http: POST https://hooks.test/memory_7c41e9" in lines
    assert "      X-Token: <secret:TOKEN>" in lines
    assert '        "title": "Onboarding Guide Review"' in lines
    assert "    ✘ notify: do[1].notify.message: 'dict object' has no attribute 'nope'" in lines


def test_schema_prints_the_rule_file_schema() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema == json.loads(json.dumps(rule_file_schema()))
    assert {"Rule", "Condition", "SlackOptions"} <= set(schema["$defs"])


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert version("omi-rules") in result.stdout


# -- example --------------------------------------------------------------------------------

SAMPLE_FILES = ROOT / "engine" / "samples"


@pytest.mark.parametrize(
    ("args", "sample"),
    [
        (["memory"], "memory-work.json"),
        (["transcript"], "transcript-call-1.json"),
        (["audio"], "audio-speech-16k.pcm"),
        (["day-summary"], "day-summary.json"),
        (["day_summary"], "day-summary.json"),
        (["transcript-session-end"], "session-end.json"),
        (["memory", "--name", "memory-personal-discarded"], "memory-personal-discarded.json"),
        (["--name", "transcript-call-2.json"], "transcript-call-2.json"),
        (["audio", "--name", "audio-silence-16k"], "audio-silence-16k.pcm"),
    ],
)
def test_example_prints_the_sample_byte_for_byte(args: list[str], sample: str) -> None:
    result = invoke("example", *args)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == (SAMPLE_FILES / sample).read_bytes()


def test_example_json_samples_are_what_the_tour_posts() -> None:
    memory = json.loads(invoke("example", "memory").stdout)
    assert (memory["id"], memory["structured"]["title"]) == (
        "memory_7c41e9",
        "Onboarding Guide Review",
    )
    summary = json.loads(invoke("example", "day-summary").stdout)
    assert summary["summary_json"]["headline"] == "Steady day of reviews and errands"
    assert len(invoke("example", "audio").stdout_bytes) == 132970


def test_example_list() -> None:
    result = invoke("example", "--list")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "memory       memory-work.json",
        "memory       memory-personal-discarded.json",
        "memory       memory-extra-fields.json",
        "memory       memory-backend-shape.json",
        "transcript   transcript-call-1.json",
        "transcript   transcript-call-2.json",
        "transcript   transcript-call-3.json",
        "transcript   transcript-app-shape.json",
        "day_summary  day-summary.json",
        "day_summary  day-summary-legacy.json",
        "audio        audio-speech-16k.pcm",
        "audio        audio-silence-16k.pcm",
        "transcript_session_end session-end.json",
        "audio_speech_start speech-start.json",
        "audio_speech_end speech-end.json",
    ]
    only_audio = invoke("example", "--list", "audio")
    assert only_audio.stdout.splitlines() == [
        "audio        audio-speech-16k.pcm",
        "audio        audio-silence-16k.pcm",
    ]


def test_every_sample_file_is_listed() -> None:
    on_disk = {p.name for p in SAMPLES_DIR.iterdir() if p.suffix in (".json", ".pcm")}
    assert on_disk == set(SAMPLES)
    assert SAMPLES_DIR == SAMPLE_FILES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["photo"], "Error: unknown trigger 'photo'; one of memory, transcript, audio, day_"),
        (["memory", "--name", "day-summary"], "Error: day-summary.json is a day_summary sample, "),
        (["--name", "memory-nope"], "Error: no sample 'memory-nope'; `omi-rules example --list`"),
        (
            [],
            "Error: give a trigger (memory, transcript, audio, day-summary, "
            "transcript-session-end) or --name",
        ),
    ],
)
def test_example_refuses_what_it_does_not_have(args: list[str], message: str) -> None:
    result = invoke("example", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr


def test_example_audio_is_not_printed_to_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, "-m", "engine.cli", "example", "audio"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        readable, _, _ = select.select([controller], [], [], 0.2)
        shown = os.read(controller, 65536) if readable else b""
    finally:
        os.close(controller)
        os.close(terminal)
    assert process.returncode == 1
    assert shown == b""
    assert process.stderr.decode() == (
        "Error: audio-speech-16k.pcm is raw PCM16 audio; redirect it: "
        "omi-rules example audio > speech.pcm\n"
    )
