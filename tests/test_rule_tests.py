"""Rule tests: `rules/*.test.yaml` cases run by `omi-rules test`, and add_case."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine import rule_tests
from engine.cli import main
from engine.rule_tests import RuleTestError, add_case, match_value, run_rule_tests, suggest_case
from engine.rules.loader import load_rules
from engine.server.store import Store
from tests.conftest import RULES_DIR
from tests.test_history import capture_fixtures


def rules_copy(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(RULES_DIR / name, folder / name)
    return folder


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["test", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_shipped_cases_pass_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMI_RULES_SECRET_SLACK_WEBHOOK_URL", "https://hooks.slack.com/x")
    code, out, _err = run_cli("--rules", str(RULES_DIR))
    assert code == 0, out
    lines = out.splitlines()
    cases = [line for line in lines if "::" in line]
    assert len(cases) == 26
    assert all(line.endswith(" PASSED") for line in cases), out
    assert any(
        line.endswith("work-to-slack.test.yaml::a work conversation is posted to Slack PASSED")
        for line in cases
    )
    assert lines[-1].startswith("26 passed in ") and lines[-1].endswith("s")


def test_every_example_rule_file_has_cases() -> None:
    rule_files = {p.name for p in RULES_DIR.glob("*.yaml") if not p.name.endswith(".test.yaml")}
    tested = {p.name.replace(".test.yaml", ".yaml") for p in RULES_DIR.glob("*.test.yaml")}
    assert rule_files == tested


def test_test_files_are_not_loaded_as_rules() -> None:
    ruleset = load_rules(RULES_DIR)
    assert ruleset.errors == []
    assert not [f for f in ruleset.files if f.endswith(".test.yaml")]
    assert len(ruleset.files) == 9


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_failing_case_shows_expected_and_got(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    write(
        folder,
        "work-to-slack.test.yaml",
        "- name: good\n"
        "  sample: memory-work\n"
        "  expect: {fires: true}\n"
        "- name: wrong title\n"
        "  sample: memory-work\n"
        "  expect:\n"
        "    fires: true\n"
        "    requests:\n"
        "      - connector: slack\n"
        "        json: {text: {contains: Budget review}}\n",
    )
    code, out, _err = run_cli("--rules", str(folder))
    assert code == 1
    assert "work-to-slack.test.yaml::good PASSED" in out
    assert "work-to-slack.test.yaml::wrong title FAILED" in out
    assert "work-to-slack.test.yaml:4: wrong title (rule work-to-slack)" in out
    assert (
        "    requests[0].json.text: expected to contain 'Budget review', "
        "got '📘 *Onboarding Guide Review* (2m 30s)\\n" in out
    )
    assert out.splitlines()[-1].startswith("1 passed, 1 failed in ")


def test_expected_not_to_fire_but_it_fired(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    write(
        folder,
        "work-to-slack.test.yaml",
        "- name: quiet\n  sample: memory-work\n  expect: {fires: false}\n",
    )
    run = run_rule_tests(folder)
    (result,) = run.results
    assert not result.passed
    assert result.message == ("expected: rule work-to-slack does not fire\ngot: fired (slack)")
    assert run.exit_code == 1


def test_expected_to_fire_but_skipped_shows_the_reason(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    write(
        folder,
        "work-to-slack.test.yaml",
        "- name: loud\n  sample: memory-personal-discarded\n  expect: {fires: true}\n",
    )
    (result,) = run_rule_tests(folder).results
    assert result.message == (
        "expected: rule work-to-slack fires\n"
        "got: skipped: when[0]: $.structured.category is 'other', not in ['work', 'business']"
    )


def test_request_count_and_reason_mismatches(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "action-items-to-notion.yaml")
    write(
        folder,
        "action-items-to-notion.test.yaml",
        "- name: one page\n"
        "  sample: memory-work\n"
        "  expect: {fires: true, requests: [{connector: notion}]}\n"
        "- name: other reason\n"
        "  sample: memory-personal-discarded\n"
        "  expect: {fires: false, reason: not discarded}\n",
    )
    one, other = run_rule_tests(folder).results
    assert one.message == "expected 1 request(s), got 2: notion, notion"
    assert other.message == (
        "reason: expected 'not discarded', got 'when[0]: $.discarded is True, not equal to False'"
    )


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("- name: a\n  sample: [memory-work\n", 3, "expected ',' or ']'"),
        ("name: a\n", 1, "a test file holds a list of cases, got dict"),
        (
            "- name: a\n  sample: memory-wrok\n  expect: {fires: true}\n",
            2,
            "no sample 'memory-wrok'; `omi-rules example --list` shows them",
        ),
        (
            "- name: a\n  sample: memory-work\n  expect: {fires: maybe}\n",
            3,
            "case 1: Expected 'bool', got 'str'",
        ),
        (
            "- name: a\n  expect: {fires: true}\n",
            1,
            "give exactly one of payload, payloads, sample, event (got none)",
        ),
        (
            "- name: a\n  sample: memory-work\n  rule: nope\n  expect: {fires: true}\n",
            3,
            "no rule 'nope' in the rules folder",
        ),
        (
            "- name: a\n  sample: memory-work\n  expect: {fires: true}\n"
            "- name: a\n  sample: memory-work\n  expect: {fires: true}\n",
            4,
            "duplicate case name 'a' (first at line 1)",
        ),
    ],
)
def test_a_broken_test_file_exits_2_with_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    write(folder, "work-to-slack.test.yaml", text)
    code, _out, err = run_cli("--rules", str(folder))
    assert code == 2
    assert f"work-to-slack.test.yaml:{line}:" in err
    assert message in err


def test_a_multi_rule_file_needs_the_rule_named_for_an_inline_payload(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "log-everything.yaml")
    write(
        folder,
        "log-everything.test.yaml",
        "- name: which\n  payload: {id: m1}\n  expect: {fires: true}\n"
        "- name: by trigger\n  payload: {id: m1}\n  trigger: memory\n  expect: {fires: true}\n",
    )
    run = run_rule_tests(folder)
    (error,) = run.errors
    assert error.line == 1
    assert error.message.endswith(
        "log-everything.yaml holds log-memories, log-transcripts, log-day-summaries: "
        "name one (rule: <id>)"
    )
    (result,) = run.results
    assert result.passed and result.rule_id == "log-memories"
    assert run.exit_code == 2


def test_a_case_of_a_broken_rule_fails(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    write(folder, "bad.yaml", "id: bad\ntrigger: memory\ndo:\n  - slack: {text: 1}\n")
    write(
        folder, "bad.test.yaml", "- name: a\n  rule: bad\n  payload: {}\n  expect: {fires: true}\n"
    )
    (result,) = run_rule_tests(folder).results
    assert not result.passed
    assert result.message.startswith("rule bad does not load: ")


def test_a_case_may_name_a_captured_event(tmp_path: Path, store_target: str) -> None:
    db = capture_fixtures(tmp_path, store_target)
    store = Store(db)
    try:
        (event_id,) = [
            row["id"]
            for row in store.query("SELECT id, body FROM events WHERE trigger = 'memory'")
            if b"memory_7c41e9" in row["body"]
        ]
    finally:
        store.close()
    folder = tmp_path / "cases"
    folder.mkdir()
    shutil.copy(RULES_DIR / "work-to-slack.yaml", folder)
    write(
        folder,
        "work-to-slack.test.yaml",
        f"- name: captured\n  event: {event_id}\n  expect:\n    fires: true\n"
        "    requests: [{connector: slack, json: {text: {contains: Onboarding}}}]\n",
    )
    code, out, _err = run_cli("--rules", str(folder), "--db", db)
    assert code == 0, out
    assert "work-to-slack.test.yaml::captured PASSED" in out
    code, _out, err = run_cli("--rules", str(folder))
    assert code == 2
    assert "work-to-slack.test.yaml:2:10: a captured event needs the store: give --db" in err


def test_add_case_appends_and_keeps_the_file(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    existing = "# my cases\n- name: first  # kept\n  sample: memory-work\n  expect: {fires: true}"
    write(folder, "work-to-slack.test.yaml", existing)
    case = {
        "name": "saved from the editor",
        "payload": {"structured": {"category": "other"}, "discarded": False},
        "expect": {"fires": False},
    }
    path = add_case(folder, "work-to-slack", case)
    assert path == folder / "work-to-slack.test.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(existing + "\n- name: saved from the editor\n")
    assert [c["name"] for c in yaml.safe_load(text)] == ["first", "saved from the editor"]
    run = run_rule_tests(folder)
    assert [r.passed for r in run.results] == [True, True] and not run.errors
    with pytest.raises(RuleTestError, match="already has a case 'saved from the editor'"):
        add_case(folder, "work-to-slack", case)


def test_add_case_creates_the_file_and_names_the_rule_of_a_multi_rule_file(
    tmp_path: Path,
) -> None:
    folder = rules_copy(tmp_path, "reminders.yaml")
    case = {"name": "a", "sample": "memory-work", "expect": {"fires": False}}
    path = add_case(folder, "personal-to-webhook", case)
    assert path.name == "reminders.test.yaml"
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == [
        {**case, "rule": "personal-to-webhook"}
    ]
    assert run_rule_tests(folder).results[0].passed


@pytest.mark.parametrize(
    ("rule_id", "case", "message"),
    [
        (
            "nope",
            {"name": "a", "sample": "memory-work", "expect": {"fires": True}},
            "no rule 'nope'",
        ),
        ("work-to-slack", {"name": "a", "expect": {"fires": "sometimes"}}, "not a valid case"),
    ],
)
def test_add_case_refuses(
    tmp_path: Path, rule_id: str, case: dict[str, object], message: str
) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    with pytest.raises(RuleTestError, match=message):
        add_case(folder, rule_id, case)
    assert not (folder / "work-to-slack.test.yaml").exists()


@pytest.mark.parametrize(
    ("wanted", "got", "problems"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, []),
        ({"a": 1}, {"b": 2}, [".a: missing (got keys: b)"]),
        (True, 1, [": expected true, got 1"]),
        (1, 1.0, []),
        ([1, 2], [1], [": expected 2 item(s), got 1: [1]"]),
        ({"contains": "ell"}, "hello", []),
        ({"contains": "x"}, {"contains": "x"}, []),
        ("a", "b", [": expected 'a', got 'b'"]),
    ],
)
def test_match_value_is_a_subset_match(wanted: object, got: object, problems: list[str]) -> None:
    assert match_value(wanted, got) == problems


def test_no_test_files_is_zero_passed(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "work-to-slack.yaml")
    run = rule_tests.run_rule_tests(folder)
    assert run.results == [] and run.exit_code == 0
    assert run.summary().startswith("0 passed in ")


def test_suggest_case_then_add_case_is_save_as_test_case(tmp_path: Path) -> None:
    folder = rules_copy(tmp_path, "reminders.yaml")
    fired = suggest_case(folder, "personal-to-webhook", "extra", {"sample": "memory-extra-fields"})
    assert fired == {
        "name": "extra",
        "sample": "memory-extra-fields",
        "rule": "personal-to-webhook",
        "expect": {"fires": True, "requests": [{"connector": "http"}]},
    }
    quiet = suggest_case(folder, "personal-to-webhook", "work", {"payload": {"discarded": True}})
    assert quiet["expect"] == {
        "fires": False,
        "reason": "when[0]: $.structured.category selects nothing "
        "(in: ['personal', 'health', 'family'])",
    }
    add_case(folder, "personal-to-webhook", fired)
    add_case(folder, "personal-to-webhook", quiet)
    run = run_rule_tests(folder)
    assert [r.passed for r in run.results] == [True, True] and not run.errors
    with pytest.raises(RuleTestError, match="no sample 'nope'"):
        suggest_case(folder, "personal-to-webhook", "x", {"sample": "nope"})
