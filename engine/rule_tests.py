"""Rule tests: cases in `rules/<name>.test.yaml` that pin what a rule does with a payload.

A test file is a list of cases:

    - name: a work conversation goes to Slack
      sample: memory-work            # or payload: {...}, payloads: [...], event: <captured id>
      rule: work-to-slack            # default: the rule of rules/<name>.yaml (of the trigger)
      expect:
        fires: true
        requests:                    # one entry per action, in order; a subset of each
          - connector: slack
            url: "<secret:SLACK_WEBHOOK_URL>"
            json: {text: {contains: "Onboarding Guide Review"}}

Each case is a dry-run (engine.dryrun, the pipeline serving uses) of the one rule, with no
secret set unless given: an unset secret shows as `<secret:NAME>`, so a case passes the same
on every machine and a test file never holds a secret. Several payloads (`payloads`, a list
of `sample`s or `event`s) are one stream, in order; `expect` is about the last event.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import yaml
from msgspec import UNSET, Struct, UnsetType

from engine import samples
from engine.dryrun import EventReport, dry_run_events
from engine.errors import OmiRulesError, PayloadError
from engine.rules.compiled import CompiledRule, RuleSet
from engine.rules.folder_io import atomic_write
from engine.rules.loader import display_path, load_rules
from engine.rules.yaml_source import SourceMap, YamlSyntaxError, load_with_marks
from engine.runtime.payloads import Event, decode_event
from engine.secrets import Secrets
from engine.server.history import captured_event
from engine.server.store import Store

TEST_SUFFIX = ".test.yaml"
DEFAULT_UID = "user123"


class Expect(Struct, forbid_unknown_fields=True):
    """What a case expects of its rule on the (last) event."""

    fires: bool
    reason: Any = UNSET  # why it did not fire: text, or {contains: text}
    requests: list[dict[str, Any]] | UnsetType = UNSET  # one entry per action, in order


class Case(Struct, forbid_unknown_fields=True):
    """One case of a test file (exactly one of payload, payloads, sample, event)."""

    name: str
    expect: Expect
    rule: str | UnsetType = UNSET
    trigger: str | UnsetType = UNSET
    payload: Any = UNSET  # one webhook body, inline (a mapping, or a transcript's list)
    payloads: list[Any] | UnsetType = UNSET  # several bodies: one stream
    sample: str | list[str] | UnsetType = UNSET  # `omi-rules example --list` names
    event: str | list[str] | UnsetType = UNSET  # captured event id(s): needs a store
    uid: str = DEFAULT_UID
    session: str = ""
    sample_rate: int | UnsetType = UNSET  # audio: default 16000 for a *16k* sample, else 8000


class CaseResult(Struct):
    file: str  # the test file, as shown (rules/x.test.yaml)
    line: int  # of the case in that file
    name: str
    rule_id: str
    passed: bool
    message: str  # why it failed (expected vs got); "" when it passed

    @property
    def nodeid(self) -> str:
        return f"{self.file}::{self.name}"


class TestFileError(Struct):
    """A test file (or one case of it) that cannot run: YAML or shape error, unknown rule,
    sample or event. Shown as file:line:column: message."""

    __test__ = False  # not a pytest class

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class TestRun(Struct):
    __test__ = False  # not a pytest class

    results: list[CaseResult]
    errors: list[TestFileError]
    seconds: float

    @property
    def passed(self) -> int:
        return sum(1 for result in self.results if result.passed)

    @property
    def failed(self) -> int:
        return sum(1 for result in self.results if not result.passed)

    @property
    def exit_code(self) -> int:
        """2 when a test file is broken, 1 when a case failed, else 0."""
        return 2 if self.errors else 1 if self.failed else 0

    def summary(self) -> str:
        parts = [f"{self.passed} passed"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.errors:
            parts.append(f"{len(self.errors)} error(s)")
        return f"{', '.join(parts)} in {self.seconds:.2f}s"


class RuleTestError(OmiRulesError):
    """add_case could not add the case (unknown rule, invalid case, unreadable file)."""


class _CaseError(Exception):
    """A case that cannot run; becomes a TestFileError at the case's line."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def rule_test_files(rules_dir: str | os.PathLike[str]) -> list[Path]:
    """The rule test files of a folder (*.test.yaml), in name order."""
    folder = Path(rules_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(TEST_SUFFIX) and p.is_file())


def run_rule_tests(
    rules_dir: str | os.PathLike[str],
    *,
    store: Store | None = None,
    secrets: Secrets | None = None,
    ruleset: RuleSet | None = None,
) -> TestRun:
    """Run every case of every `*.test.yaml` in `rules_dir` against its rules."""
    started = time.perf_counter()
    rules = ruleset if ruleset is not None else load_rules(rules_dir)
    secrets = secrets if secrets is not None else Secrets()
    results: list[CaseResult] = []
    errors: list[TestFileError] = []
    for path in rule_test_files(rules_dir):
        file_results, file_errors = run_test_file(path, rules, store=store, secrets=secrets)
        results.extend(file_results)
        errors.extend(file_errors)
    return TestRun(results, errors, time.perf_counter() - started)


def run_test_file(
    path: Path, rules: RuleSet, *, store: Store | None, secrets: Secrets
) -> tuple[list[CaseResult], list[TestFileError]]:
    """The cases of one test file: their results, and the errors of those that cannot run."""
    file = display_path(path)
    cases, errors = read_cases(path)
    results = []
    for index, raw, source in cases:
        try:
            case = _decode_case(raw, index)
            result = run_case(case, path, rules, store=store, secrets=secrets, file=file)
        except _CaseError as exc:
            mark = source.mark_of((index, *exc.path))
            errors.append(TestFileError(file, mark.line, mark.column, exc.message))
            continue
        results.append(msgspec.structs.replace(result, line=source.mark_of((index,)).line))
    return results, errors


def read_cases(path: Path) -> tuple[list[tuple[int, Any, SourceMap]], list[TestFileError]]:
    """The raw cases of a test file with where they stand, or the file's error."""
    file = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
        raw, source = load_with_marks(text, file)
    except (OSError, UnicodeDecodeError) as exc:
        return [], [TestFileError(file, 1, 1, f"cannot read: {exc}")]
    except YamlSyntaxError as exc:
        return [], [TestFileError(file, exc.mark.line, exc.mark.column, exc.message)]
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        message = f"a test file holds a list of cases, got {type(raw).__name__}"
        return [], [TestFileError(file, 1, 1, message)]
    errors = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            mark = source.mark_of((index, "name"))
            message = f"duplicate case name {name!r} (first at line {seen[name]})"
            errors.append(TestFileError(file, mark.line, mark.column, message))
        elif isinstance(name, str):
            seen[name] = source.mark_of((index,)).line
    return [(index, item, source) for index, item in enumerate(raw)], errors


_MSGSPEC_PATH = re.compile(r" - at `\$(.*)`$")


def _decode_case(raw: Any, index: int) -> Case:
    try:
        return msgspec.convert(raw, Case)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _MSGSPEC_PATH.search(text)
        path: tuple[str | int, ...] = ()
        if match:
            text = text[: match.start()]
            path = tuple(
                int(part[1:-1]) if part.startswith("[") else part
                for part in re.findall(r"\[\d+\]|[^.\[\]]+", match.group(1))
            )
        raise _CaseError(f"case {index + 1}: {text.replace('`', chr(39))}", path) from None


def run_case(
    case: Case,
    test_file: Path,
    rules: RuleSet,
    *,
    store: Store | None = None,
    secrets: Secrets | None = None,
    file: str | None = None,
) -> CaseResult:
    """Dry-run one case's rule on its events and compare with `expect`."""
    secrets = secrets if secrets is not None else Secrets()
    file = file or display_path(test_file)
    source_trigger, bodies = _sources(case, store)
    trigger = case.trigger if case.trigger is not UNSET else source_trigger
    rule = _rule_of(case, test_file, rules, trigger)
    if isinstance(rule, str):  # the rule does not load
        return CaseResult(file, 0, case.name, _rule_id(case), False, rule)
    trigger = trigger or rule.trigger
    if rule.trigger != trigger:
        raise _CaseError(
            f"rule {rule.id} takes {rule.trigger} events, the case gives {trigger}", ("trigger",)
        )
    events = list(_events(case, trigger, bodies))
    if not events:
        raise _CaseError("the case gives no event", ())
    # a case tries its rule as if enabled: a rule shipped `enabled: false` is tested before
    # it is turned on
    reports = list(dry_run_events(events, RuleSet(rules=[switched_on(rule)]), secrets))
    problems = compare(case.expect, rule.id, reports[-1])
    return CaseResult(file, 0, case.name, rule.id, not problems, "\n".join(problems))


def switched_on(rule: CompiledRule) -> CompiledRule:
    """`rule` with `enabled: true`."""
    if rule.enabled:
        return rule
    return dataclasses.replace(rule, spec=msgspec.structs.replace(rule.spec, enabled=True))


def _rule_id(case: Case) -> str:
    return case.rule if case.rule is not UNSET else ""


Body = bytes | Event


def _sources(case: Case, store: Store | None) -> tuple[str | None, list[Body]]:
    """The trigger the case's events imply (None for inline payloads) and their bodies."""
    given = [
        name
        for name in ("payload", "payloads", "sample", "event")
        if getattr(case, name) is not UNSET
    ]
    if len(given) != 1:
        found = ", ".join(given) or "none"
        raise _CaseError(f"give exactly one of payload, payloads, sample, event (got {found})")
    if case.payload is not UNSET:
        return None, [msgspec.json.encode(case.payload)]
    if case.payloads is not UNSET:
        return None, [msgspec.json.encode(body) for body in case.payloads or []]
    if case.sample is not UNSET:
        names = [case.sample] if isinstance(case.sample, str) else case.sample
        return _samples(names)
    names = [case.event] if isinstance(case.event, str) else list(case.event or [])
    return _captured(names, store)


def _samples(names: list[str]) -> tuple[str | None, list[Body]]:
    triggers: set[str] = set()
    bodies: list[Body] = []
    for name in names:
        try:
            sample = samples.sample_name(name)
        except KeyError as exc:
            raise _CaseError(exc.args[0], ("sample",)) from None
        triggers.add(samples.SAMPLES[sample])
        bodies.append(samples.sample_bytes(sample))
    if len(triggers) > 1:
        raise _CaseError(f"the samples are of several triggers: {', '.join(sorted(triggers))}")
    return (triggers.pop() if triggers else None), bodies


def _captured(ids: list[str], store: Store | None) -> tuple[str | None, list[Body]]:
    if store is None:
        raise _CaseError("a captured event needs the store: give --db", ("event",))
    events: list[Body] = []
    for event_id in ids:
        event = captured_event(store, event_id)
        if event is None:
            raise _CaseError(f"no captured event {event_id!r} in the store", ("event",))
        events.append(event)
    triggers = {event.trigger for event in events if isinstance(event, Event)}
    if len(triggers) > 1:
        raise _CaseError(f"the events are of several triggers: {', '.join(sorted(triggers))}")
    return (triggers.pop() if triggers else None), events


def _events(case: Case, trigger: str, bodies: list[Body]) -> Iterator[Event]:
    sample_rate = case.sample_rate
    if sample_rate is UNSET:
        sample_rate = 16000 if case.sample is not UNSET and "16k" in str(case.sample) else 8000
    for body in bodies:
        if isinstance(body, Event):
            yield body
            continue
        try:
            yield decode_event(
                trigger, body, uid=case.uid, session_id=case.session, sample_rate=sample_rate
            )
        except PayloadError as exc:
            raise _CaseError(f"the payload is not a {trigger} event: {exc.reason}") from None


def _rule_of(
    case: Case, test_file: Path, rules: RuleSet, trigger: str | None
) -> CompiledRule | str:
    """The case's rule, or why it does not load (a failure, not a file error)."""
    if case.rule is not UNSET:
        rule = rules.get(case.rule)
        if rule is not None:
            return rule
        if case.rule in rules.broken_ids:
            return f"rule {case.rule} does not load: {rules.broken_ids[case.rule]}"
        raise _CaseError(f"no rule {case.rule!r} in the rules folder", ("rule",))
    rule_file = rule_file_of(test_file)
    in_file = [rule for rule in rules.rules if _same_file(rule.file, rule_file)]
    candidates = [rule for rule in in_file if trigger in (None, rule.trigger)]
    if len(candidates) == 1:
        return candidates[0]
    if not rule_file.exists():
        raise _CaseError(f"no rule file {display_path(rule_file)}: name the rule (rule: <id>)")
    if not in_file:
        broken = [e.message for e in rules.errors if _same_file(e.file, rule_file)]
        return f"{display_path(rule_file)} has no rule that loads: " + (
            broken[0] if broken else "it holds no rule"
        )
    ids = ", ".join(rule.id for rule in candidates or in_file)
    raise _CaseError(f"{display_path(rule_file)} holds {ids}: name one (rule: <id>)")


def rule_file_of(test_file: Path) -> Path:
    """rules/x.test.yaml -> rules/x.yaml (or rules/x.yml when only that exists)."""
    stem = test_file.name[: -len(TEST_SUFFIX)]
    yaml_file = test_file.with_name(stem + ".yaml")
    yml_file = test_file.with_name(stem + ".yml")
    return yml_file if not yaml_file.exists() and yml_file.exists() else yaml_file


def _same_file(shown: str, path: Path) -> bool:
    return bool(shown) and os.path.abspath(shown) == os.path.abspath(path)


# --- expected vs got -------------------------------------------------------------------


def compare(expect: Expect, rule_id: str, report: EventReport) -> list[str]:
    """What differs between `expect` and the rule's part of `report` (empty: the case
    passes)."""
    matched = next((m for m in report.matched if m.rule == rule_id), None)
    skipped = next((s for s in report.skipped if s.rule == rule_id), None)
    if matched is None:
        reason = skipped.reason if skipped else "not decided"
        if expect.fires:
            return [f"expected: rule {rule_id} fires", f"got: skipped: {reason}"]
        if expect.reason is not UNSET:
            return [f"reason{problem}" for problem in match_value(expect.reason, reason)]
        return []
    actions = [msgspec.to_builtins(action) for action in matched.actions]
    if not expect.fires:
        shown = ", ".join(a["connector"] for a in actions) or "no action"
        return [f"expected: rule {rule_id} does not fire", f"got: fired ({shown})"]
    if expect.requests is UNSET:
        return []
    if len(expect.requests) != len(actions):
        got = ", ".join(a["connector"] for a in actions) or "none"
        return [f"expected {len(expect.requests)} request(s), got {len(actions)}: {got}"]
    problems = []
    for index, (wanted, action) in enumerate(zip(expect.requests, actions, strict=True)):
        problems += [f"requests[{index}]{p}" for p in match_request(wanted, action)]
    return problems


def match_request(wanted: dict[str, Any], action: dict[str, Any]) -> list[str]:
    """`connector` and `error` are the action's; every other key is of its request."""
    problems = []
    for key in ("connector", "error"):
        if key in wanted:
            problems += [f".{key}{p}" for p in match_value(wanted[key], action.get(key))]
    fields = {k: v for k, v in wanted.items() if k not in ("connector", "error")}
    if fields:
        request = action.get("request")
        if request is None:
            problems.append(f": expected a request, got error: {action.get('error')}")
        else:
            problems += match_value(fields, request)
    return problems


def match_value(wanted: Any, got: Any, path: str = "") -> list[str]:
    """Subset match: a mapping's listed keys, a list item by item (same length), a string
    exactly or `{contains: text}`; each problem is `path: expected ..., got ...`."""
    if isinstance(wanted, dict) and set(wanted) == {"contains"} and isinstance(got, str):
        if str(wanted["contains"]) in got:
            return []
        return [f"{path}: expected to contain {_shown(wanted['contains'])}, got {_shown(got)}"]
    if isinstance(wanted, dict) and isinstance(got, dict):
        problems = []
        for key, value in wanted.items():
            if key not in got:
                problems.append(f"{path}.{key}: missing (got keys: {', '.join(map(str, got))})")
            else:
                problems += match_value(value, got[key], f"{path}.{key}")
        return problems
    if isinstance(wanted, list) and isinstance(got, list):
        if len(wanted) != len(got):
            return [f"{path}: expected {len(wanted)} item(s), got {len(got)}: {_shown(got)}"]
        problems = []
        for index, (item, got_item) in enumerate(zip(wanted, got, strict=True)):
            problems += match_value(item, got_item, f"{path}[{index}]")
        return problems
    if isinstance(wanted, bool) or isinstance(got, bool):  # True is not 1
        same = wanted is got
    else:
        same = wanted == got
    if same:
        return []
    return [f"{path}: expected {_shown(wanted)}, got {_shown(got)}"]


def _shown(value: Any, limit: int = 300) -> str:
    text = msgspec.json.encode(value).decode() if not isinstance(value, str) else value
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[:limit] + "…"


# --- save as test case -----------------------------------------------------------------


def add_case(rules_dir: str | os.PathLike[str], rule_id: str, case: dict[str, Any]) -> Path:
    """Append `case` to the test file of `rule_id`'s rule file (rules/<stem>.test.yaml),
    keeping what the file holds; the file is made when missing. `rule` is filled in when
    the rule file holds several rules. Returns the test file."""
    rules = load_rules(rules_dir)
    rule = rules.get(rule_id)
    if rule is None:
        raise RuleTestError(f"no rule {rule_id!r} loads from {display_path(Path(rules_dir))}")
    rule_path = Path(rule.file)
    siblings = [r for r in rules.rules if _same_file(r.file, rule_path)]
    case = dict(case)
    if len(siblings) > 1 or "rule" in case:
        case["rule"] = rule_id
    try:
        msgspec.convert(case, Case)
    except msgspec.ValidationError as exc:
        raise RuleTestError(f"not a valid case: {str(exc).replace('`', chr(39))}") from None
    target = Path(rules_dir) / (rule_path.stem + TEST_SUFFIX)
    existing = target.read_text(encoding="utf-8") if target.exists() else ""
    cases, errors = read_cases(target) if existing.strip() else ([], [])
    if errors or (existing.strip() and not cases and _parsed(existing) is not None):
        problem = errors[0] if errors else "it does not hold a list of cases"
        raise RuleTestError(f"cannot add to {display_path(target)}: {problem}")
    if any(isinstance(raw, dict) and raw.get("name") == case["name"] for _, raw, _ in cases):
        raise RuleTestError(f"{display_path(target)} already has a case {case['name']!r}")
    if existing and not existing.endswith("\n"):
        existing += "\n"
    text = existing + yaml.safe_dump(
        [case], sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
    )
    if len(_parsed(text) or []) != len(cases) + 1:  # e.g. a flow-style list ([...]) before
        raise RuleTestError(f"cannot append to {display_path(target)}: rewrite it as a block list")
    atomic_write(target, text)
    return target


def suggest_case(
    rules_dir: str | os.PathLike[str],
    rule_id: str,
    name: str,
    source: dict[str, Any],
    *,
    store: Store | None = None,
    rules: RuleSet | None = None,
) -> dict[str, Any]:
    """A case pinning what `rule_id` does now with `source` ({"sample": ...}, {"payload":
    ...}, {"payloads": [...]} or {"event": ...}): whether it fires, and each action's
    connector (or why it does not fire). Rendered fields are left for the user to pick:
    some change from run to run (a log line's time). For "save as test case": pass the
    result to add_case."""
    rules = rules if rules is not None else load_rules(rules_dir)
    case: dict[str, Any] = {"name": name, **source, "rule": rule_id}
    probe = msgspec.convert({**case, "expect": {"fires": False}}, Case)
    test_file = Path(rules_dir) / "suggested.test.yaml"
    try:
        trigger, bodies = _sources(probe, store)
        rule = _rule_of(probe, test_file, rules, trigger)
        if isinstance(rule, str):
            raise RuleTestError(rule)
        events = list(_events(probe, trigger or rule.trigger, bodies))
    except _CaseError as exc:
        raise RuleTestError(exc.message) from None
    report = list(dry_run_events(events, RuleSet(rules=[rule]), Secrets()))[-1]
    matched = next((m for m in report.matched if m.rule == rule_id), None)
    if matched is None:
        reason = next((s.reason for s in report.skipped if s.rule == rule_id), "")
        case["expect"] = {"fires": False, "reason": reason}
    else:
        requests = [{"connector": action.connector} for action in matched.actions]
        case["expect"] = {"fires": True, "requests": requests}
    return case


def _parsed(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None
