"""Keyword slots: "remind me to {task}" captures the words up to the next pause into
`match.slots`. Phrases with bad slots are rule errors; capture in one call; an open slot
waits across calls and is closed by the next call or a closing evaluation; and however a
transcript is split into calls, the same hits fire (a hypothesis property)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dryrun import dry_run_events
from engine.rules.compiled import RuleSet
from engine.rules.keywords import KeywordHit, KeywordMatcher, Scan
from engine.rules.slots import MAX_SLOT_WORDS, SlotClock, SlotSyntax, slot_pattern
from engine.rules.spoken import LOOKBACK_WORDS, SpokenText, sentence_ends
from engine.runtime.limits import Limits
from engine.runtime.pipeline import Outcome, Pipeline
from engine.secrets import Secrets
from tests.helpers import NOW, decision, event, load_errors, load_ok, memory, run

# -- phrases ------------------------------------------------------------------------------


def test_a_phrase_is_split_into_literal_parts_and_slots_before_normalizing() -> None:
    pattern = slot_pattern("Add {item} to the shopping-list")
    assert pattern is not None
    assert pattern.literals == (("add",), ("to", "the", "shopping", "list"))
    assert pattern.names == ("item",)
    assert not pattern.trailing
    trailing = slot_pattern("remind me to { task }")
    assert trailing is not None
    assert (trailing.literals, trailing.names, trailing.trailing) == (
        (("remind", "me", "to"),),
        ("task",),
        True,
    )
    assert slot_pattern("turn on the lights") is None


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        (
            "remind me to {1task}",
            'slot {1task} in "remind me to {1task}" is not a name (letters, digits and _, '
            "not starting with a digit)",
        ),
        ("remind me to {}", 'slot {} in "remind me to {}" is not a name'),
        ("note {a} and {a}", 'slot {a} appears twice in "note {a} and {a}"'),
        (
            "x {a} y {b} z {c} w {d} v {e}",
            '"x {a} y {b} z {c} w {d} v {e}" has 5 slots; a phrase holds at most 4',
        ),
        ("{a}, {b}", '"{a}, {b}" has no word besides its slots'),
        ("{who} is calling", '"{who} is calling" starts with a slot ({who}); begin it with a word'),
        (
            "add {item} {where}",
            'slots {item} and {where} in "add {item} {where}" are next to each other; put a '
            "word between them",
        ),
        (
            "add {item}, {where} please",
            'slots {item} and {where} in "add {item}, {where} please" are next to each other',
        ),
        ("remind me to {task", '"remind me to {task" has a brace that opens or closes no slot'),
        ("remind me} to", '"remind me} to" has a brace that opens or closes no slot'),
    ],
)
def test_bad_slots(phrase: str, message: str) -> None:
    with pytest.raises(SlotSyntax) as raised:
        slot_pattern(phrase)
    assert str(raised.value).startswith(message)


RULE = """
id: r
trigger: transcript
when:
  - keywords: {keywords}
{options}do:
  - notify: {{message: "{{{{ match.slots }}}}"}}
"""


def rule_errors(folder: Path, keywords: str, options: str = "") -> list[tuple[int, str]]:
    text = RULE.format(keywords=keywords, options=options)
    return [(e.line or 0, e.message) for e in load_errors(folder, text)]


def test_a_bad_slot_is_a_rule_error_at_its_phrase(tmp_path: Path) -> None:
    errors = rule_errors(tmp_path, '\n      - "lights on"\n      - "remind me {a} {b}"')
    assert errors == [
        (
            6,
            'keywords: slots {a} and {b} in "remind me {a} {b}" are next to each other; '
            "put a word between them",
        )
    ]
    assert rule_errors(tmp_path, '"{a} b"') == [
        (4, 'keywords: "{a} b" starts with a slot ({a}); begin it with a word')
    ]


def test_slot_wait_and_count_errors(tmp_path: Path) -> None:
    assert rule_errors(tmp_path, '"lights on"', "    slot_wait: 5s\n") == [
        (5, "'slot_wait' only goes with a phrase ending in a slot, like \"remind me to {task}\"")
    ]
    assert rule_errors(tmp_path, '"add {item} to the list"', "    slot_wait: 5s\n") == [
        (5, "'slot_wait' only goes with a phrase ending in a slot, like \"remind me to {task}\"")
    ]
    assert rule_errors(tmp_path, '"remind me to {task}"', "    slot_wait: 3m\n") == [
        (5, "slot_wait: 3m is longer than 120s")
    ]
    assert rule_errors(tmp_path, '"remind me to {task}"', "    slot_wait: soon\n") == [
        (5, "slot_wait: 'soon' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)")
    ]
    assert rule_errors(tmp_path, '"remind me to {task}"', "    count: {at_least: 2}\n") == [
        (5, "count: does not go with a phrase with slots (counting slots is not supported)")
    ]


def test_slot_wait_goes_only_with_keywords(tmp_path: Path) -> None:
    text = (
        "id: r\ntrigger: transcript\nwhen:\n  - template: 'x'\n    slot_wait: 5s\ndo: [log: {}]\n"
    )
    errors = load_errors(tmp_path, text)
    assert [(e.line, e.message) for e in errors] == [(5, "'slot_wait' only goes with 'keywords:'")]


# -- capture in one call ------------------------------------------------------------------


def seg(text: str, *, user: bool = True, **extra: Any) -> dict[str, Any]:
    return {"text": text, "is_user": user, **extra}


def scan(
    phrases: list[str],
    segments: list[dict[str, Any]],
    *,
    first_new: int = 0,
    fuzzy: bool = False,
    speaker: Any = "any",
    clock: SlotClock | None = None,
) -> Scan:
    matcher = KeywordMatcher(phrases, fuzzy=fuzzy)
    spoken = SpokenText.of(segments, first_new, speaker, lookback_words=matcher.lookback_words)
    return matcher.scan(spoken, clock=clock or SlotClock())


def slots(found: Scan) -> dict[str, str] | None:
    return None if found.hit is None else found.hit.slots


def test_sentence_ends() -> None:
    text = "Remind me to buy milk. Then 3.5 kilos? Yes; ok"
    assert sentence_ends(text, 11) == [
        *[False] * 4,
        True,  # milk.
        False,
        False,  # 3.5: a decimal point
        False,
        True,  # kilos?
        True,  # Yes;
        False,
    ]


def test_a_trailing_slot_stops_at_a_sentence_break() -> None:
    found = scan(["remind me to {task}"], [seg("Hey, remind me to Buy milk, eggs. Thanks!")])
    assert slots(found) == {"task": "Buy milk, eggs"}
    assert found.hit is not None
    assert found.hit.as_context()["slots"] == {"task": "Buy milk, eggs"}


def test_a_trailing_slot_stops_where_another_speaker_follows() -> None:
    segments = [seg("remind me to call Mom"), seg("sure thing", user=False)]
    assert slots(scan(["remind me to {task}"], segments)) == {"task": "call Mom"}


def test_a_trailing_slot_stops_at_a_gap_between_segments() -> None:
    segments = [seg("remind me to call", start=0, end=1.0), seg("Mom", start=3.5, end=4.0)]
    assert slots(scan(["remind me to {task}"], segments)) == {"task": "call"}
    close = [seg("remind me to call", start=0, end=1.0), seg("Mom.", start=2.5, end=3.0)]
    assert slots(scan(["remind me to {task}"], close)) == {"task": "call Mom"}


def test_a_trailing_slot_runs_across_segments_of_one_speaker() -> None:
    segments = [seg("remind me to buy"), seg("oat milk and"), seg("bread. Also")]
    found = scan(["remind me to {task}"], segments)
    assert slots(found) == {"task": "buy oat milk and bread"}
    assert found.hit is not None and found.hit.text == "remind me to buy oat milk and bread. Also"


def test_a_speaker_filter_applies() -> None:
    segments = [seg("remind me to water the plants.", user=False)]
    assert scan(["remind me to {task}"], segments, speaker="user").hit is None
    assert slots(scan(["remind me to {task}"], segments, speaker="others")) == {
        "task": "water the plants"
    }


def test_a_middle_slot_takes_the_fewest_words() -> None:
    found = scan(
        ["add {item} to the shopping list"],
        [seg("Please add oat milk to the shopping list and to the shopping list")],
    )
    assert slots(found) == {"item": "oat milk"}
    two = scan(["add {item} to {list}"], [seg("add eggs to the weekend list.")])
    assert slots(two) == {"item": "eggs", "list": "the weekend list"}
    assert scan(["add {item} to the list"], [seg("add to the list")]).hit is None


def test_a_middle_slot_runs_across_segments() -> None:
    segments = [seg("add oat"), seg("milk to the list", user=True)]
    assert slots(scan(["add {item} to the list"], segments)) == {"item": "oat milk"}


def test_an_empty_trailing_slot_is_no_match() -> None:
    assert scan(["remind me to {task}"], [seg("remind me to. Never mind")]).hit is None
    found = scan(["remind me to {task}"], [seg("remind me to"), seg("what?", user=False)])
    assert found == Scan()


def test_fuzzy_applies_to_the_literal_parts() -> None:
    segments = [seg("remind me too buy milk.")]
    assert scan(["remind me to {task}"], segments).hit is None
    assert slots(scan(["remind me to {task}"], segments, fuzzy=True)) == {"task": "buy milk"}
    list_ = [seg("add eggs to the shoping list")]
    assert slots(scan(["add {item} to the shopping list"], list_, fuzzy=True)) == {"item": "eggs"}


def test_a_negated_slot_phrase_does_not_fire() -> None:
    found = scan(["remind me to {task}"], [seg("Don't remind me to call him.")])
    assert found.hit is None
    assert found.negated is not None and found.negated.negated_by == "dont"
    assert found.negated.slots == {"task": "call him"}
    later = scan(["remind me to {task}"], [seg("Don't remind me to x. Remind me to y.")])
    assert slots(later) == {"task": "y"}


def test_a_slot_stops_at_its_word_cap() -> None:
    words = [f"w{i}" for i in range(MAX_SLOT_WORDS + 5)]
    found = scan(["remind me to {task}"], [seg("remind me to " + " ".join(words))])
    assert slots(found) == {"task": " ".join(words[:MAX_SLOT_WORDS])}
    middle = scan(["add {item} to the list"], [seg("add " + " ".join(words) + " to the list")])
    assert middle.hit is None


def test_a_slot_keeps_the_words_as_written_or_falls_back_to_normalized() -> None:
    # "İ" lower-cases into two characters, heard as two words: the words as heard
    assert slots(scan(["note {x}"], [seg("Note: İstanbul trip!")])) == {"x": "i stanbul trip"}
    assert slots(scan(["note {x}"], [seg("note don't  forget_it.")])) == {"x": "don't  forget_it"}


def test_an_open_slot_waits_and_a_closing_clock_closes_it() -> None:
    segments = [seg("ok"), seg("remind me to buy")]
    found = scan(["remind me to {task}"], segments, first_new=1)
    assert found.hit is None and found.waiting is not None
    hit, name = found.waiting
    assert (hit.slots, name) == ({"task": "buy"}, "task")
    closed = scan(["remind me to {task}"], segments, first_new=2, clock=SlotClock(end="fires"))
    assert slots(closed) == {"task": "buy"}
    again = scan(["remind me to {task}"], segments, first_new=2, clock=SlotClock(end="old"))
    assert again == Scan()
    # nothing said after the phrase: no slot to close
    empty = [seg("remind me to")]
    assert scan(["remind me to {task}"], empty, first_new=1, clock=SlotClock(end="fires")) == (
        Scan()
    )


def test_a_plain_phrase_in_the_same_condition_still_fires_first_when_listed_first() -> None:
    found = scan(["lights on", "remind me to {task}"], [seg("remind me to buy lights on")])
    assert found.hit is not None and found.hit.phrase == "lights on"


# -- across calls -------------------------------------------------------------------------

SLOT_RULE = """
- id: remind
  trigger: transcript
  when:
    - keywords: ["remind me to {task}"]
  do:
    - notify: {message: "Task: {{ match.slots.task }}"}
"""
# time budgets off: a busy machine must not skip a rule
NO_BUDGETS = Limits(match_budget_ms=1e9, event_budget_ms=1e9, render_budget_ms=1e9)


class Session:
    """One live session through a real pipeline, a segment clock and a wall clock."""

    def __init__(self, ruleset: RuleSet, *, indexed: bool = True) -> None:
        self.pipeline = Pipeline(
            ruleset, Secrets({}), dry_run=True, limits=NO_BUDGETS, indexed=indexed
        )
        self.at = 0.0

    def call(self, *texts: str | dict[str, Any], now: float) -> Outcome:
        segments = []
        for text in texts:
            one = seg(text) if isinstance(text, str) else text
            segments.append({"start": self.at, "end": self.at + 1.0, **one})
            self.at += 1.0
        body = {"session_id": "s", "segments": segments}
        return self.pipeline.process(event("transcript", body, session="s"), now=now)

    def closing(self, now: float) -> Outcome:
        body = {"session_id": "s", "segments": []}
        return self.pipeline.process(event("transcript", body, session="s"), now=now, closing=True)


def fired(outcome: Outcome) -> list[tuple[str, dict[str, str]]]:
    return [(d.rule.id, d.hit.slots if d.hit else {}) for d in outcome.matched]


def messages(outcome: Outcome) -> list[Any]:
    return [a.request.message for a in outcome.actions]  # type: ignore[union-attr]


def test_a_slot_still_being_spoken_waits_for_the_next_call(tmp_path: Path) -> None:
    session = Session(load_ok(tmp_path, SLOT_RULE))
    first = session.call("hey, remind me to", now=NOW)
    waiting = decision(first, "remind")
    assert not waiting.matched
    assert waiting.reason == (
        "when[0]: slot {task} still being spoken; waits for the next call (up to 10s)"
    )
    assert waiting.wait_until == NOW + 10.0
    assert first.wait_until == NOW + 10.0
    second = session.call("buy oat milk.", now=NOW + 1)
    assert fired(second) == [("remind", {"task": "buy oat milk"})]
    assert messages(second) == ["Task: buy oat milk"]
    assert second.wait_until is None
    # later calls, a resent one, and a closing evaluation never fire it again
    assert fired(session.call("thanks.", now=NOW + 2)) == []
    assert fired(session.call("buy oat milk.", now=NOW + 3)) == []
    assert fired(session.closing(now=NOW + 60)) == []


def test_another_speakers_segment_closes_the_slot(tmp_path: Path) -> None:
    session = Session(load_ok(tmp_path, SLOT_RULE))
    assert fired(session.call("remind me to call the dentist", now=NOW)) == []
    other = seg("ok, I will", user=False)
    assert fired(session.call(other, now=NOW + 1)) == [("remind", {"task": "call the dentist"})]
    assert fired(session.call("remind me", now=NOW + 2)) == []


def test_a_closing_evaluation_after_slot_wait_fires_with_the_words_heard(tmp_path: Path) -> None:
    text = SLOT_RULE.replace(
        '["remind me to {task}"]', '["remind me to {task}"]\n      slot_wait: 5s'
    )
    session = Session(load_ok(tmp_path, text))
    opened = session.call("remind me to water the", now=NOW)
    assert opened.wait_until == NOW + 5.0
    early = session.closing(now=NOW + 4)
    assert fired(early) == []
    assert decision(early, "remind").reason == (
        "when[0]: slot {task} still being spoken; waits for the next call (up to 5s)"
    )
    assert early.wait_until == NOW + 5.0  # still counted from the last speech heard
    closed = session.closing(now=NOW + 5)
    assert fired(closed) == [("remind", {"task": "water the"})]
    assert messages(closed) == ["Task: water the"]
    again = session.closing(now=NOW + 6)
    assert fired(again) == []
    assert again.wait_until is None
    # speech after the wait does not fire the closed slot again, nor carry it on
    assert fired(session.call("plants.", now=NOW + 20)) == []


def test_a_closing_evaluation_fires_only_rules_waiting_on_a_slot(tmp_path: Path) -> None:
    text = SLOT_RULE + "- id: always\n  trigger: transcript\n  do: [log: {}]\n"
    session = Session(load_ok(tmp_path, text))
    assert [d.rule.id for d in session.call("remind me to", now=NOW).matched] == ["always"]
    closed = session.closing(now=NOW + 30)
    assert fired(closed) == []
    assert decision(closed, "always").reason == (
        "closing evaluation: the rule waits on no keyword slot"
    )


def test_a_phrase_closed_by_the_next_calls_first_segment_fires_then(tmp_path: Path) -> None:
    session = Session(load_ok(tmp_path, SLOT_RULE))
    assert fired(session.call("remind me to stretch", now=NOW)) == []
    # the same speaker, starting 5 s after: a pause; every word of the hit is old
    late = {"text": "Anyway", "is_user": True, "start": 10.0, "end": 11.0}
    assert fired(session.call(late, now=NOW + 2)) == [("remind", {"task": "stretch"})]


def test_dry_run_shows_the_slot_in_the_request(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, SLOT_RULE)
    calls = [
        event("transcript", {"session_id": "d", "segments": [seg("remind me to")]}, session="d"),
        event("transcript", {"session_id": "d", "segments": [seg("pay rent.")]}, session="d"),
    ]
    first, second = dry_run_events(calls, ruleset, Secrets({}))
    assert [s.reason for s in first.skipped] == [
        "when[0]: slot {task} still being spoken; waits for the next call (up to 10s)"
    ]
    assert [m.rule for m in second.matched] == ["remind"]
    assert second.matched[0].actions[0].request == {"message": "Task: pay rent"}


# -- splitting a transcript into calls changes nothing ------------------------------------

PROPERTY_RULES = """
- id: remind
  trigger: transcript
  when:
    - keywords: ["remind me to {task}"]
  do: [log: {}]
- id: shop
  trigger: transcript
  when:
    - keywords: ["add {item} to the shopping list"]
      speaker: user
  do: [log: {}]
- id: both
  trigger: transcript
  when:
    - keywords: ["note {what} for {who}"]
      slot_wait: 20s
  do: [log: {}]
"""
FILLER = st.sampled_from(["milk", "oat", "bread", "Mom", "call", "the", "dentist", "ok", "don't"])
PUNCT = st.sampled_from(["", "", "", ".", "?", ",", ";"])


@st.composite
def transcript(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Segments of filler words and the rules' phrases, each literal part at most once (so
    a rule has one hit at most: a call fires a rule once), with various speakers, gaps and
    punctuation."""
    units = [["remind me to"]]
    for first, last in (("add", "to the shopping list"), ("note", "for")):
        if draw(st.booleans()):
            units.append([first])
            units.append([last])
        else:
            units.append([first, *draw(st.lists(FILLER, min_size=1, max_size=2)), last])
    words: list[str] = []
    for unit in draw(st.permutations(units)):
        if draw(st.integers(0, 3)):
            words.extend(" ".join(unit).split())
        words.extend(w + draw(PUNCT) for w in draw(st.lists(FILLER, max_size=3)))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(words))), min_size=1, max_size=8)))
    segments = []
    at = 0.0
    for start, end in itertools.pairwise([0, *cuts, len(words)]):
        text = " ".join(words[start:end])
        if not text:
            continue
        at += draw(st.sampled_from([0.0, 0.5, 3.0]))
        user = draw(st.sampled_from([True, True, False]))
        segments.append({"text": text + draw(PUNCT), "is_user": user, "start": at, "end": at + 1.0})
        at += 1.0
    return segments


def _fired_over(
    ruleset: RuleSet, calls: list[list[dict[str, Any]]], *, indexed: bool
) -> list[tuple[str, dict[str, str]]]:
    pipeline = Pipeline(ruleset, Secrets({}), dry_run=True, limits=NO_BUDGETS, indexed=indexed)
    found = []
    for number, segments in enumerate(calls):
        body = {"session_id": "s", "segments": segments}
        outcome = pipeline.process(event("transcript", body, session="s"), now=NOW + number)
        found.extend(fired(outcome))
    body = {"session_id": "s", "segments": []}
    closing = pipeline.process(event("transcript", body, session="s"), now=NOW + 99, closing=True)
    return found + fired(closing)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transcript(), st.data())
def test_splitting_a_transcript_into_calls_fires_the_same_hits(
    segments: list[dict[str, Any]], data: st.DataObject
) -> None:
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(segments)), min_size=1, max_size=4))))
    calls = [segments[a:b] for a, b in itertools.pairwise([0, *cuts, len(segments)])]
    calls = [call for call in calls if call]
    with tempfile.TemporaryDirectory() as folder:
        ruleset = load_ok(Path(folder), PROPERTY_RULES)
    whole = sorted(_fired_over(ruleset, [segments], indexed=True), key=repr)
    split = sorted(_fired_over(ruleset, calls, indexed=True), key=repr)
    assert split == whole
    assert sorted(_fired_over(ruleset, calls, indexed=False), key=repr) == whole


def test_keyword_hit_equality_includes_slots() -> None:
    assert KeywordHit("p", "t", "s", slots={"a": "1"}) != KeywordHit("p", "t", "s", slots={})


def test_outcome_wait_until_reads_only_the_rules_visited(tmp_path: Path) -> None:
    others = "".join(
        f"- id: z{i}\n  trigger: transcript\n  when: [{{keywords: zebra{i}}}]\n  do: [log: {{}}]\n"
        for i in range(20)
    )
    session = Session(load_ok(tmp_path, SLOT_RULE + others))
    outcome = session.call("remind me to feed the", now=NOW)
    decisions: Any = outcome.decisions
    assert outcome.wait_until == NOW + 10.0
    assert [d.rule.id for d in decisions.visited] == ["remind"]
    assert decisions._explained == {}  # the zebra rules were left out and stay unexplained
    assert decision(outcome, "z3").reason == "when[0]: no new speech says 'zebra3'"


def test_a_middle_slot_split_across_calls_fires_when_its_last_part_is_heard(
    tmp_path: Path,
) -> None:
    text = SLOT_RULE.replace('"remind me to {task}"', '"add {item} to the shopping list"')
    text = text.replace("match.slots.task", "match.slots.item")
    session = Session(load_ok(tmp_path, text))
    first = session.call("add oat milk to the", now=NOW)
    assert fired(first) == [] and first.wait_until is None
    assert decision(first, "remind").reason == (
        "when[0]: no new speech says 'add {item} to the shopping list'"
    )
    second = session.call("shopping list please", now=NOW + 1)
    assert fired(second) == [("remind", {"item": "oat milk"})]
    assert messages(second) == ["Task: oat milk"]
    assert fired(session.call("and that is all.", now=NOW + 2)) == []


def test_a_negated_open_slot_does_not_wait(tmp_path: Path) -> None:
    session = Session(load_ok(tmp_path, SLOT_RULE))
    outcome = session.call("please don't remind me to", now=NOW)
    assert outcome.wait_until is None
    assert decision(outcome, "remind").reason == (
        'when[0]: keywords: "remind me to {task}" was negated ("please don\'t remind me to")'
    )
    assert fired(session.closing(now=NOW + 30)) == []


def test_a_memory_is_all_there_is_so_its_end_closes_a_slot(tmp_path: Path) -> None:
    text = SLOT_RULE.replace("trigger: transcript", "trigger: memory")
    doc = memory()
    doc["transcript_segments"] = [
        {"text": "Remind me to book the venue", "speaker": "SPEAKER_00", "is_user": True}
    ]
    outcome = run(load_ok(tmp_path, text), event("memory", doc))
    assert fired(outcome) == [("remind", {"task": "book the venue"})]
    assert outcome.wait_until is None


def test_a_hit_longer_than_the_usual_look_back_is_still_found(tmp_path: Path) -> None:
    """Four slots of 25 words, all heard in call 1 and closed by call 2's first segment:
    the window reaches back past LOOKBACK_WORDS for slot phrases."""
    text = SLOT_RULE.replace('"remind me to {task}"', '"one {a} two {b} three {c} four {d}"')
    session = Session(load_ok(tmp_path, text))
    filler = [f"w{i}" for i in range(25)]
    words = ["one", *filler, "two", *filler, "three", *filler, "four", *filler]
    assert len(words) > LOOKBACK_WORDS + 30
    segments = [" ".join(words[i : i + 5]) for i in range(0, len(words), 5)]
    assert fired(session.call(*segments, now=NOW)) == []
    closed = session.call(seg("right", user=False), now=NOW + 1)
    assert fired(closed) == [("remind", dict.fromkeys("abcd", " ".join(filler)))]
