"""`when:` conditions as DESIGN defines them: path operators over ANY selected value,
nesting, templates and time windows. Each rule is loaded from YAML and run through the
dry-run pipeline, so these are the semantics a rule author gets."""

from __future__ import annotations

import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from engine.runtime.matcher import Decision
from tests.helpers import NOW, decision, event, load_ok, memory, run
from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules

DOC = {
    **memory(),
    "tags": ["Work", "Planning"],
    "score": 7,
    "score_text": "12",
    "one": 1,
    "empty_list": [],
    "folder_id": None,
    "created_at": "2024-07-22T10:00:00+00:00",
}


def check(
    tmp_path: Path,
    when: str,
    doc: dict[str, Any] | None = None,
    *,
    trigger: str = "memory",
    now: float = NOW,
) -> Decision:
    """Load a one-rule file with this `when:` and run `doc` through it."""
    conditions = textwrap.indent(textwrap.dedent(when).strip("\n"), "  ")
    ruleset = load_ok(
        tmp_path, f"id: r\ntrigger: {trigger}\nwhen:\n{conditions}\ndo:\n  - log: {{}}\n"
    )
    return decision(run(ruleset, event(trigger, DOC if doc is None else doc), now=now), "r")


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        # equals / not_equals: exact, case-sensitive, JSON types (false is not 0)
        ("path: $.structured.category\nequals: work", True),
        ("path: $.structured.category\nequals: Work", False),
        ("path: $.discarded\nequals: false", True),
        ("path: $.score\nequals: 7.0", True),
        ("path: $.discarded\nequals: 0", False),
        ("path: $.one\nequals: true", False),
        ("path: $.structured.category\nnot_equals: personal", True),
        ("path: $.structured.category\nnot_equals: work", False),
        # in / not_in
        ("path: $.structured.category\nin: [work, business]", True),
        ("path: $.structured.category\nin: [personal]", False),
        ("path: $.discarded\nin: [0, 1]", False),
        ("path: $.structured.category\nnot_in: [personal, health]", True),
        ("path: $.structured.category\nnot_in: [work]", False),
        # contains: case-insensitive substring, list member, mapping key
        ("path: $.structured.title\ncontains: PLANNING", True),
        ("path: $.structured.title\ncontains: budget", False),
        ("path: $.tags\ncontains: work", True),
        ("path: $.tags\ncontains: wor", False),
        ("path: $.structured\ncontains: title", True),
        # matches: re.search on text only
        ("path: $.structured.title\nmatches: '^Launch\\s+plan'", True),
        ("path: $.structured.title\nmatches: '^plan'", False),
        ("path: $.score\nmatches: '7'", False),
        # exists
        ("path: $.folder_id\nexists: true", True),
        ("path: $.nope\nexists: true", False),
        ("path: $.nope\nexists: false", True),
        ("path: $.score\nexists: false", False),
        ("path: $.nope", False),
        ("path: $.score", True),
        # empty / not_empty (missing and null count as empty)
        ("path: $.empty_list\nempty: true", True),
        ("path: $.nope\nempty: true", True),
        ("path: $.folder_id\nempty: true", True),
        ("path: $.structured.title\nempty: true", False),
        ("path: $.structured.title\nempty: false", True),
        ("path: $.structured.action_items\nnot_empty: true", True),
        ("path: $.empty_list\nnot_empty: true", False),
        ("path: $.nope\nnot_empty: true", False),
        ("path: $.empty_list\nnot_empty: false", True),
        # gt / gte / lt / lte: numbers, numeric text, ISO text; booleans never compare
        ("path: $.score\ngt: 5", True),
        ("path: $.score\ngt: 7", False),
        ("path: $.score\ngte: 7", True),
        ("path: $.score\nlt: 7", False),
        ("path: $.score\nlt: 7.5", True),
        ("path: $.score\nlte: 7", True),
        ("path: $.score_text\ngt: 10", True),
        ("path: $.structured.title\ngt: 10", False),
        ("path: $.created_at\ngt: '2024-07-01'", True),
        ("path: $.created_at\nlt: '2024-07-01'", False),
        ("path: $.discarded\nlt: 1", False),
        # several operators on one path: all must hold
        ("path: $.score\ngt: 5\nlt: 10", True),
        ("path: $.score\ngt: 5\nlt: 6", False),
    ],
)
def test_path_operators(tmp_path: Path, condition: str, holds: bool) -> None:
    lines = condition.splitlines()
    when = "- " + "\n  ".join(lines)
    result = check(tmp_path, when)
    assert result.matched is holds, result.reason


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        # one item is completed and one is not: both hold, because ANY value counts
        ("path: $.structured.action_items[*].completed\nequals: true", True),
        ("path: $.structured.action_items[*].completed\nequals: false", True),
        ("path: $.structured.action_items[*].description\ncontains: room", True),
        ("path: $.structured.action_items[*].description\ncontains: budget", False),
        ("path: $.transcript_segments[*].speaker\nin: [SPEAKER_01]", True),
        (
            "path: $.structured.action_items[?(@.completed == true)].description\nmatches: ^Book",
            True,
        ),
        (
            "path: $.structured.action_items[?(@.completed == true)].description\nmatches: ^Write",
            False,
        ),
    ],
)
def test_any_selected_value_satisfies(tmp_path: Path, condition: str, holds: bool) -> None:
    when = "- " + "\n  ".join(condition.splitlines())
    assert check(tmp_path, when).matched is holds


def test_reasons_name_path_value_and_operator(tmp_path: Path) -> None:
    assert check(tmp_path, "- path: $.structured.category\n  in: [personal]").reason == (
        "when[0]: $.structured.category is 'work', not in ['personal']"
    )


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        ("- path: $.nope\n  equals: 1", "when[0]: $.nope selects nothing (equals: 1)"),
        ("- path: $.nope\n  exists: true", "when[0]: $.nope selects nothing (exists: True)"),
        ("- path: $.score\n  exists: false", "when[0]: $.score is 7 (exists: False)"),
        (
            "- path: $.empty_list\n  not_empty: true",
            "when[0]: $.empty_list is [] (not_empty: True)",
        ),
        ("- path: $.score\n  gt: 9", "when[0]: $.score is 7, not > 9"),
        (
            "- path: $.structured.title\n  matches: ^x",
            "when[0]: $.structured.title is 'Launch planning', does not match '^x'",
        ),
        (
            "- path: $.discarded\n  equals: false\n- path: $.score\n  lt: 3",
            "when[1]: $.score is 7, not < 3",
        ),
    ],
)
def test_reasons(tmp_path: Path, when: str, reason: str) -> None:
    result = check(tmp_path, when)
    assert (result.matched, result.reason) == (False, reason)


NESTED = """
- any:
    - path: $.structured.category
      equals: personal
    - all:
        - path: $.discarded
          equals: false
        - not:
            path: $.structured.title
            contains: {word}
"""


def test_nested_any_all_not(tmp_path: Path) -> None:
    assert check(tmp_path, NESTED.format(word="budget")).matched is True
    result = check(tmp_path, NESTED.format(word="launch"))
    assert result.matched is False
    assert result.reason == (
        "when[0]: none of: $.structured.category is 'work', not equal to 'personal'; "
        "all[1]: 'not' condition holds"
    )


def test_not_with_a_list_holds_unless_all_of_them_hold(tmp_path: Path) -> None:
    when = """
    - not:
        - path: $.structured.category
          equals: work
        - path: $.score
          gt: {bound}
    """
    assert check(tmp_path, when.format(bound=10)).matched is True
    assert check(tmp_path, when.format(bound=1)).matched is False


def test_empty_when_always_holds(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, "id: r\ntrigger: memory\ndo: [{log: {}}]\n")
    assert decision(run(ruleset, event("memory", DOC)), "r").matched is True


# -- template conditions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "holds"),
    [
        ("{{ memory.structured.action_items | length > 1 }}", True),
        ("{{ memory.structured.category == 'personal' }}", False),
        ("{{ uid == 'user123' and rule.id == 'r' }}", True),
        ("{{ 'yes' }}", True),
        ("{{ '' }}", False),
        ("{{ 'No' }}", False),
        ("{{ 0 }}", False),
        ("{{ none }}", False),
        ("{% if memory.discarded %}x{% endif %}", False),
    ],
)
def test_template_conditions(tmp_path: Path, template: str, holds: bool) -> None:
    result = check(tmp_path, f'- template: "{template}"')
    assert result.matched is holds, result.reason


def test_template_condition_reason(tmp_path: Path) -> None:
    result = check(tmp_path, "- template: \"{{ memory.structured.category == 'x' }}\"")
    assert result.reason == (
        "when[0]: template \"{{ memory.structured.category == 'x' }}\" rendered 'False'"
    )


def test_a_failing_template_condition_skips_only_its_rule(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        - id: broken
          trigger: memory
          when:
            - template: "{{ memory.structured.nope }}"
          do: [{log: {}}]
        - id: fine
          trigger: memory
          do: [{log: {}}]
        """,
    )
    outcome = run(ruleset, event("memory", DOC))
    assert decision(outcome, "fine").matched is True
    broken = decision(outcome, "broken")
    assert (broken.matched, broken.reason) == (
        False,
        "when.template failed: 'dict object' has no attribute 'nope'",
    )


# -- time windows ---------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


def at(hour: int, minute: int = 0, day: int = 22, zone: ZoneInfo = BERLIN) -> float:
    """A timestamp on July `day` 2024 (the 22nd is a Monday) in `zone`."""
    return datetime(2024, 7, day, hour, minute, tzinfo=zone).timestamp()


@pytest.mark.parametrize(
    ("window", "now", "holds"),
    [
        ("{after: '09:00', before: '17:00', tz: Europe/Berlin}", at(9), True),
        ("{after: '09:00', before: '17:00', tz: Europe/Berlin}", at(16, 59), True),
        ("{after: '09:00', before: '17:00', tz: Europe/Berlin}", at(17), False),
        ("{after: '09:00', before: '17:00', tz: Europe/Berlin}", at(8, 59), False),
        # the same instant is 07:00 in UTC
        ("{after: '09:00', before: '17:00', tz: UTC}", at(9), False),
        # past midnight
        ("{after: '22:00', before: '06:00', tz: Europe/Berlin}", at(23, 30), True),
        ("{after: '22:00', before: '06:00', tz: Europe/Berlin}", at(0, 0), True),
        ("{after: '22:00', before: '06:00', tz: Europe/Berlin}", at(5, 59), True),
        ("{after: '22:00', before: '06:00', tz: Europe/Berlin}", at(6, 0), False),
        ("{after: '22:00', before: '06:00', tz: Europe/Berlin}", at(12), False),
        # open ends, and 24:00 as the end of the day
        ("{after: '20:00', tz: Europe/Berlin}", at(23, 59), True),
        ("{before: '08:00', tz: Europe/Berlin}", at(8, 1), False),
        ("{before: '24:00', tz: Europe/Berlin}", at(23, 59), True),
        ("{after: '18:00', before: '24:00', tz: Europe/Berlin}", at(19), True),
        ("{after: '18:00', before: '24:00', tz: Europe/Berlin}", at(17), False),
        # weekdays, in the window's zone
        ("{weekdays: [mon, tue], tz: Europe/Berlin}", at(12), True),
        ("{weekdays: [sat, sun], tz: Europe/Berlin}", at(12), False),
        ("{weekdays: [sat], tz: Europe/Berlin}", at(12, day=27), True),
        # Monday 00:30 in Berlin is still Sunday in New York
        ("{weekdays: [sun], tz: America/New_York}", at(0, 30), True),
        ("{weekdays: [mon], tz: America/New_York}", at(0, 30), False),
        (
            "{after: '22:00', before: '06:00', weekdays: [fri], tz: Europe/Berlin}",
            at(23, day=26),
            True,
        ),
        (
            "{after: '22:00', before: '06:00', weekdays: [fri], tz: Europe/Berlin}",
            at(1, day=27),
            False,
        ),
    ],
)
def test_time_windows(tmp_path: Path, window: str, now: float, holds: bool) -> None:
    result = check(tmp_path, f"- time: {window}", now=now)
    assert result.matched is holds, result.reason


def test_time_window_without_tz_uses_local_time(tmp_path: Path) -> None:
    local_hour = datetime.fromtimestamp(NOW).astimezone().hour
    window = f"{{after: '{local_hour:02d}:00', before: '{(local_hour + 1) % 24:02d}:00'}}"
    assert check(tmp_path, f"- time: {window}", now=NOW).matched is True
    window = (
        f"{{after: '{(local_hour + 1) % 24:02d}:00', before: '{(local_hour + 2) % 24:02d}:00'}}"
    )
    assert check(tmp_path, f"- time: {window}", now=NOW).matched is False


def test_time_reasons(tmp_path: Path) -> None:
    outside = check(tmp_path, "- time: {after: '09:00', before: '17:00', tz: UTC}", now=NOW)
    assert outside.reason == "when[0]: time 00:00 outside 09:00:00-17:00:00"
    weekday = check(tmp_path, "- time: {weekdays: [sat], tz: UTC}", now=NOW)
    assert weekday.reason == "when[0]: tue is not one of the weekdays"


@pytest.mark.parametrize(
    ("values", "holds"),
    [([1, 10], False), ([1, 4, 10], True), ([4], True), ([], False)],
)
def test_several_operators_must_hold_for_one_value(
    tmp_path: Path, values: list[int], holds: bool
) -> None:
    doc = {"items": [{"n": n} for n in values]}
    result = check(tmp_path, "- path: $.items[*].n\n  gt: 2\n  lt: 5", doc)
    assert result.matched is holds
    if values == [1, 10]:
        assert result.reason == "when[0]: $.items[*].n is 1, not > 2"


# -- bounded matching -------------------------------------------------------------------------

CATASTROPHIC = r"^(\w+\s?)*$"  # backtracking engines take time doubling per character


def test_matches_runs_in_linear_time_on_a_catastrophic_pattern(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        f"""
        id: rx
        trigger: memory
        when:
          - path: $.structured.title
            matches: '{CATASTROPHIC}'
        do: [{{log: {{}}}}]
        """,
    )
    started = time.monotonic()
    outcome = run(ruleset, event("memory", memory(title="a" * 28 + "!")))
    assert time.monotonic() - started < 5  # Python's re: about 30 s; RE2: microseconds
    assert decision(outcome, "rx").reason == (
        f"when[0]: $.structured.title is '{'a' * 28}!', does not match {CATASTROPHIC!r}"
    )
    assert run(ruleset, event("memory", memory(title="two words"))).matched


def test_a_hostile_title_over_http_leaves_the_server_responsive(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
        - id: rx
          trigger: memory
          when: [{{path: $.structured.title, matches: '{CATASTROPHIC}'}}]
          do: [{{log: {{}}}}]
        """,
    )
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        body = memory(title="a" * 28 + "!")
        assert client.post("/webhook/memory", params={"uid": "u"}, json=body).status_code == 200
        assert client.get("/health").status_code == 200
        assert time.monotonic() - started < 5
        (event,) = client.get("/api/events", headers=ADMIN).json()
        assert event["status"] == "processed"
        detail = client.get(f"/api/events/{event['id']}", headers=ADMIN).json()
        assert "does not match" in detail["decisions"][0]["reason"]  # (computed when read)
