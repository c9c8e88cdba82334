"""Negated keyword phrases: the README's table of spoken variants, run as it stands (so the
docs and the behaviour cannot drift), the clause and segment rules, fuzzy phrases,
`negation: allow`, the skip reason, and a negated command posted over HTTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.rules.keywords import KeywordMatcher
from engine.rules.negation import CUES, FILLERS, MAX_FILLERS
from engine.rules.spoken import SpokenText, clause_numbers
from engine.server.app import create_app
from tests.helpers import decision, event, load_ok, pipeline
from tests.server_helpers import admin_client, server_settings, write_rules
from tests.test_docs import README, table_lines

PHRASE = "turn on the lights"


def spoken_variants() -> list[tuple[str, bool, str]]:
    """(said, fires, why) for each row of the README's negation table."""
    rows = []
    for line in table_lines("| said | fires | why |"):
        said, fires, why = (cell.strip() for cell in line.strip().strip("|").split("|"))
        assert fires in ("yes", "no"), line
        rows.append((said, fires == "yes", why))
    return rows


VARIANTS = spoken_variants()


def fires(texts: list[str], *, fuzzy: bool = False, allow: bool = False) -> bool:
    spoken = SpokenText.of([{"text": text, "is_user": True} for text in texts])
    matcher = KeywordMatcher([PHRASE], fuzzy=fuzzy, allow_negated=allow)
    return matcher.find(spoken) is not None


def test_the_readme_table_has_at_least_30_variants_of_each_kind() -> None:
    assert len(VARIANTS) >= 30
    assert sum(fired for _said, fired, _why in VARIANTS) >= 15
    assert sum(not fired for _said, fired, _why in VARIANTS) >= 15
    assert len({said for said, _fired, _why in VARIANTS}) == len(VARIANTS)


@pytest.mark.parametrize(("said", "expected", "why"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_each_spoken_variant_of_the_readme_table(said: str, expected: bool, why: str) -> None:
    assert fires([said]) is expected, why
    assert fires([said], fuzzy=True) is expected, why
    assert fires([said], allow=True)  # negation: allow fires on every one of them


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("Don't turn on the lites", False),
        ("Do not tern on the lights", False),
        ("I don't know, turn on the lites", True),
        ("Turn on the lites", True),
    ],
)
def test_fuzzy_phrases_are_negated_the_same_way(said: str, expected: bool) -> None:
    assert fires([said], fuzzy=True) is expected
    assert fires([said], fuzzy=True, allow=True)


def test_a_negation_reaches_only_within_its_segment() -> None:
    assert not fires(["Don't turn on the lights"])
    assert fires(["Don't", "turn on the lights"])  # another segment: another utterance
    assert fires(["Don't turn on the lights", "turn on the lights"])  # said again, plainly


def test_a_negation_reaches_past_at_most_max_fillers_words() -> None:
    assert MAX_FILLERS == 4
    assert not fires(["I don't really want you to turn on the lights"])  # 4 fillers
    assert fires(["I don't really want you to go turn on the lights"])  # 5 fillers


def test_decimal_points_and_thousands_commas_do_not_end_a_clause() -> None:
    assert clause_numbers("Set 3.5 degrees, then 1,000 more. Go", 7) == [0, 0, 0, 0, 1, 1, 1]
    assert clause_numbers("a - b - c", 3) == [0, 1, 2]
    assert clause_numbers("too few", 4) == [0, 0, 0, 0]


def test_the_readme_names_every_cue_and_filler() -> None:
    section = README.split("#### Negation", 1)[1].split("| said |", 1)[0]
    fillers = re.search(r"at most 4 of these words: `([^`]*)`", section.replace("\n  ", " "))
    assert fillers and set(fillers.group(1).split()) == FILLERS
    cues = {cue[0] for cue in CUES} - {"nt"}
    for word in cues:
        assert re.search(rf"`{word[:-2]}n't`|`{word}`|`{word}\b", section, re.I), word


NEGATED_RULE = """
- id: lights
  trigger: transcript
  when:
    - keywords: "turn on the lights"
  do: [{log: {}}]
- id: lights-any
  trigger: transcript
  when:
    - keywords: "turn on the lights"
      negation: allow
  do: [{log: {}}]
"""


def transcript(*texts: str) -> dict[str, Any]:
    segments = [
        {"text": text, "speaker": "SPEAKER_00", "is_user": True, "start": i, "end": i + 1}
        for i, text in enumerate(texts)
    ]
    return {"session_id": "s1", "segments": segments}


def test_the_skip_reason_says_the_phrase_was_negated(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, NEGATED_RULE)
    outcome = pipeline(ruleset).process(
        event("transcript", transcript("Please don't turn on the lights"), session="s1")
    )
    assert decision(outcome, "lights").reason == (
        'when[0]: keywords: "turn on the lights" was negated ("Please don\'t turn on the lights")'
    )
    assert [d.rule.id for d in outcome.matched] == ["lights-any"]


def test_negation_is_a_keywords_option_only(tmp_path: Path) -> None:
    from tests.helpers import load_errors

    errors = load_errors(
        tmp_path,
        "- trigger: memory\n  when: [{path: $.a, negation: allow}]\n  do: [{log: {}}]\n",
    )
    assert "'negation' only goes with 'keywords:'" in str(errors[0])
    errors = load_errors(
        tmp_path,
        "- trigger: transcript\n  when: [{keywords: x, negation: maybe}]\n  do: [{log: {}}]\n",
    )
    assert "negation" in str(errors[0]) and "maybe" in str(errors[0])


def test_a_negated_command_posted_over_http_does_not_fire(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), NEGATED_RULE.replace("- id: lights-any", "- id: z", 1))
    with admin_client(create_app(settings)) as client:
        answer = client.post(
            "/webhook/transcript?uid=u1&session_id=s1",
            json=transcript("Hey Omi, don't turn on the lights"),
        )
        assert answer.status_code == 200
        (listed,) = client.get("/api/events").json()
        detail = client.get(f"/api/events/{listed['id']}").json()
    by_rule = {d["rule"]: d for d in detail["decisions"]}
    assert by_rule["lights"]["matched"] is False
    assert by_rule["lights"]["reason"] == (
        'when[0]: keywords: "turn on the lights" was negated ("Hey Omi, don\'t turn on the lights")'
    )
    assert by_rule["z"]["matched"] is True


def test_over_http_a_later_plain_command_in_the_session_still_fires(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), NEGATED_RULE.split("- id: lights-any", 1)[0])
    calls = [
        {"text": "Don't turn on the lights", "start": 0.0, "end": 1.0},
        {"text": "Okay, now turn on the lights", "start": 5.0, "end": 6.0},
    ]
    with admin_client(create_app(settings)) as client:
        for segment in calls:
            body = {"session_id": "s2", "segments": [{**segment, "is_user": True}]}
            answer = client.post("/webhook/transcript?uid=u1&session_id=s2", json=body)
            assert answer.status_code == 200
        listed = client.get("/api/events").json()
        details = [client.get(f"/api/events/{e['id']}").json() for e in listed]
    decided = sorted(
        (d["matched"], d["reason"].split(" (")[0]) for e in details for d in e["decisions"]
    )
    assert decided == [
        (False, 'when[0]: keywords: "turn on the lights" was negated'),
        (True, ""),
    ]
