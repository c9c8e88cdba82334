"""The rule index changes speed, never a decision: for random rule sets and payloads the
indexed matcher decides exactly what visiting every rule decides (matched, reason, hit and
for_each items), and plain JSONPaths read directly select what jsonpath-ng selects."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.rules.jsonpaths import plain_steps, select, select_walked
from engine.rules.keyword_index import PhraseIndex
from engine.rules.keywords import KeywordMatcher
from engine.rules.spoken import SpokenText
from engine.rules.template_keys import template_equality
from engine.runtime.limits import Limits
from engine.runtime.pipeline import Outcome, Pipeline
from engine.secrets import Secrets
from tests.helpers import NOW, event, load_ok, memory

# -- rule sets ----------------------------------------------------------------------------

SCALARS = st.sampled_from(
    ["work", "Work", "personal", "topic-1", "", "1", 1, 1.0, 0, 2.5, True, False, None]
)
VALUES = SCALARS | st.lists(SCALARS, max_size=2)
PATHS = st.sampled_from(
    [
        "$.structured.category",
        "$.structured.kind",
        "$.structured.count",
        "$.structured.tags[*]",
        "$.structured.tags[0]",
        "$.structured.action_items[*].completed",
        "$.structured.missing",
        "$.discarded",
    ]
)
PATTERNS = st.sampled_from(["^wor", "k$", "(?i)WORK", "topic-\\d+", "a|e", "^$"])
WORDS = ["launch", "deadline", "next", "sprint", "hey", "omi", "homie", "lights", "on", "ok"]
PHRASES = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
# keyword slots (engine.rules.slots): never looked up by words, so always candidates
SLOT_PHRASES = st.sampled_from(["hey {x}", "next {x} on", "ok {a} lights {b}", "launch {what}"])


def _yaml(value: Any) -> str:
    return json.dumps(value)  # JSON is YAML: one line, quoted as JSON quotes


@st.composite
def path_condition(draw: st.DrawFn) -> str:
    path = draw(PATHS)
    kind = draw(st.sampled_from(["equals", "in", "matches", "not_equals", "contains", "exists"]))
    if kind == "in":
        operand = _yaml(draw(st.lists(SCALARS, max_size=3)))
    elif kind == "matches":
        operand = _yaml(draw(PATTERNS))
    elif kind == "exists":
        operand = _yaml(draw(st.booleans()))
    else:
        operand = _yaml(draw(VALUES if kind != "contains" else SCALARS))
    return f"{{path: {_yaml(path)}, {kind}: {operand}}}"


@st.composite
def keyword_condition(draw: st.DrawFn) -> str:
    phrases = draw(st.lists(PHRASES | SLOT_PHRASES, min_size=1, max_size=3))
    slots = any("{" in phrase for phrase in phrases)
    options = ""
    if draw(st.booleans()):
        options += ", fuzzy: true"
    speaker = draw(st.sampled_from([None, "user", "others", "any"]))
    if speaker:
        options += f", speaker: {speaker}"
    negation = draw(st.sampled_from([None, "allow", "deny"]))
    if negation:
        options += f", negation: {negation}"
    count = draw(
        st.sampled_from([None, "{at_least: 2}", "{at_least: 2, within: 1s}", "{at_least: 3}"])
    )
    if count and not slots:  # counting slot phrases is refused
        options += f", count: {count}"
    trailing = any(phrase.endswith("}") for phrase in phrases)
    if trailing and draw(st.booleans()):
        options += f", slot_wait: {draw(st.sampled_from(['1s', 2, '30s']))}"
    return f"{{keywords: {_yaml(phrases)}{options}}}"


TEMPLATES = {
    "memory": [
        "{{ memory.structured.category == 'work' }}",
        "{{ memory.structured.nothing_here }}",  # a missing variable fails the condition
        "{{ 'launch' in memory.structured.title }}",
        # a field compared with a text: looked up by the index
        "{{ event.structured.kind == 'work' }}",
        " {{ 'Work' == memory['structured'].category }} ",
        "{{ memory.structured.items == 'work' }}",  # a dict method, not the key
        "{{ memory.structured.tags == 'work' }}",
    ],
    "transcript": [
        "{{ 'launch' in session.text }}",
        "{{ segments | length > 1 }}",
        "{{ event.session_id == 's' }}",
    ],
}


def conditions(trigger: str) -> st.SearchStrategy[str]:
    simple = (
        path_condition()
        | keyword_condition()
        | st.sampled_from(TEMPLATES[trigger]).map(lambda t: f"{{template: {_yaml(t)}}}")
        | st.just('{time: {after: "08:00", before: "20:00", tz: UTC}}')
    )
    return st.one_of(
        simple,
        st.lists(simple, min_size=1, max_size=2).map(lambda c: f"{{any: [{', '.join(c)}]}}"),
        st.lists(simple, min_size=1, max_size=2).map(lambda c: f"{{all: [{', '.join(c)}]}}"),
        simple.map(lambda c: f"{{not: [{c}]}}"),
    )


@st.composite
def rule(draw: st.DrawFn, number: int, trigger: str) -> str:
    lines = [f"- id: r{number}", f"  trigger: {trigger}"]
    if draw(st.integers(0, 9)) == 0:
        lines.append("  enabled: false")
    if draw(st.integers(0, 9)) == 0:
        lines.append("  uids: [alice]")
    if trigger == "memory" and draw(st.integers(0, 4)) == 0:
        lines.append("  for_each: $.structured.action_items[?(@.completed == false)]")
    when = draw(st.lists(conditions(trigger), max_size=3))
    lines.append(f"  when: [{', '.join(when)}]")
    lines.append("  do: [{log: {}}]")
    return "\n".join(lines) + "\n"


def rules(trigger: str) -> st.SearchStrategy[str]:
    return st.integers(1, 12).flatmap(
        lambda n: st.tuples(*(rule(i, trigger) for i in range(n))).map("".join)
    )


# -- events -------------------------------------------------------------------------------

SAYINGS = st.lists(
    st.sampled_from(
        [*WORDS, "hey homie", "dead line", "Launch!", "next-sprint", "lites"]
        + ["don't", "do not", "never", "no need to", "why not", "I don't know,", "dare"]
    ),
    max_size=6,
).map(" ".join)
SEGMENTS = st.lists(st.fixed_dictionaries({"text": SAYINGS, "is_user": st.booleans()}), max_size=3)


@st.composite
def memory_doc(draw: st.DrawFn) -> dict[str, Any]:
    doc = memory(
        category=draw(st.sampled_from(["work", "Work", "personal", "topic-1", "", "1", None])),
        kind=draw(VALUES),  # fields Omi may add are kept, whatever their type
        count=draw(SCALARS),
        tags=draw(st.lists(SCALARS, max_size=3)),
        action_items=[
            {"description": "x", "completed": completed}
            for completed in draw(st.lists(st.booleans(), max_size=2))
        ],
    )
    if draw(st.booleans()):
        del doc["structured"]["category"]
    doc["discarded"] = draw(st.sampled_from([True, False, None]))
    doc["transcript_segments"] = [
        {**segment, "speaker": "SPEAKER_00"} for segment in draw(SEGMENTS)
    ]
    return doc


def _decided(outcome: Outcome) -> list[tuple[Any, ...]]:
    return [(d.rule.id, d.matched, d.reason, d.hit, d.items) for d in outcome.decisions]


# time budgets off: a busy machine must not skip a rule on one side only
NO_BUDGETS = Limits(match_budget_ms=1e9, event_budget_ms=1e9, render_budget_ms=1e9)


def _pipelines(text: str, folder: Path) -> tuple[Pipeline, Pipeline]:
    ruleset = load_ok(folder, text)
    return (
        Pipeline(ruleset, Secrets({}), dry_run=True, limits=NO_BUDGETS, indexed=True),
        Pipeline(ruleset, Secrets({}), dry_run=True, limits=NO_BUDGETS, indexed=False),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules("memory"), memory_doc(), st.sampled_from(["user123", "alice"]))
def test_indexed_memory_decisions_equal_visiting_every_rule(
    text: str, doc: dict[str, Any], uid: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        indexed, reference = _pipelines(text, Path(folder))
        fast = indexed.process(event("memory", doc, uid=uid), now=NOW)
        slow = reference.process(event("memory", doc, uid=uid), now=NOW)
    assert [d.rule.id for d in fast.matched] == [d.rule.id for d in slow.matched]
    assert _decided(fast) == _decided(slow)
    assert [a.key_suffix for a in fast.actions] == [a.key_suffix for a in slow.actions]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules("transcript"), st.lists(SEGMENTS, min_size=1, max_size=3))
def test_indexed_transcript_decisions_equal_visiting_every_rule(
    text: str, calls: list[list[dict[str, Any]]]
) -> None:
    """Live sessions too: a phrase split across calls, words already heard, keyword slots
    left open and closed by a closing evaluation."""
    with tempfile.TemporaryDirectory() as folder:
        indexed, reference = _pipelines(text, Path(folder))
        start = 0.0
        for number, segments in enumerate(calls):
            timed = []
            for segment in segments:
                timed.append({**segment, "start": start, "end": start + 1.0})
                start += 1.0
            body = {"session_id": "s", "segments": timed}
            now = NOW + number
            fast = indexed.process(event("transcript", body, session="s"), now=now)
            slow = reference.process(event("transcript", body, session="s"), now=now)
            assert _decided(fast) == _decided(slow)
            assert fast.wait_until == slow.wait_until
        # a closing evaluation closes the keyword slots still open, on both sides alike
        body = {"session_id": "s", "segments": []}
        now = NOW + len(calls) + 60
        fast = indexed.process(event("transcript", body, session="s"), now=now, closing=True)
        slow = reference.process(event("transcript", body, session="s"), now=now, closing=True)
        assert _decided(fast) == _decided(slow)


def test_rules_the_index_leaves_out_are_explained_only_when_read(tmp_path: Path) -> None:
    text = "".join(
        f"- id: r{i}\n  trigger: memory\n  when: [{{path: $.structured.category, equals: "
        f"c{i}}}]\n  do: [{{log: {{}}}}]\n"
        for i in range(50)
    )
    indexed, _reference = _pipelines(text, tmp_path)
    outcome = indexed.process(event("memory", memory(category="c7")), now=NOW)
    decisions: Any = outcome.decisions
    assert [d.rule.id for d in decisions.visited] == ["r7"]
    assert [d.rule.id for d in outcome.matched] == ["r7"]
    assert decisions[-1].reason == "when[0]: $.structured.category is 'c7', not equal to 'c49'"
    assert len(outcome.skipped) == 49


# -- the phrase index ------------------------------------------------------------------------

LETTERS = st.text(alphabet="aeimnorst", min_size=1, max_size=7)
# segments of a few words, some of them negations ("not" is also spelled from LETTERS)
SPOKEN_WORDS = st.lists(
    st.lists(LETTERS | st.sampled_from(["dont", "never", "no need", "why", ","]), max_size=4).map(
        " ".join
    ),
    max_size=6,
)


NEGATIONS = st.sampled_from(["dont", "not", "never", "no need to", "why not", "dont know ,"])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.lists(LETTERS, min_size=1, max_size=4).map(" ".join), min_size=1, max_size=8),
    st.booleans(),
    SPOKEN_WORDS,
    st.integers(0, 6),
    st.data(),
)
def test_the_phrase_index_names_every_phrase_the_matcher_finds(
    phrases: list[str], fuzzy: bool, words: list[str], first_new: int, data: st.DataObject
) -> None:
    """Short words from few letters: many near misses, split and joined words; some phrases
    said after a negation. Negation only ever takes a hit away, so the index, which does not
    look for negations, still names every phrase found."""
    said = data.draw(st.lists(st.tuples(st.integers(0, 6), NEGATIONS, st.sampled_from(phrases))))
    for at, negation, phrase in said:
        words.insert(min(at, len(words)), f"{negation} {phrase}")
    index = PhraseIndex()
    matchers = [KeywordMatcher([phrase], fuzzy=fuzzy) for phrase in phrases]
    for matcher in matchers:
        index.add(matcher.phrases[0], fuzzy=fuzzy)
    index.build()
    segments = [{"text": word} for word in words]
    spoken = SpokenText.of(segments, min(first_new, len(segments)))
    heard = index.heard(spoken)
    found = {i for i, matcher in enumerate(matchers) if matcher.find(spoken) is not None}
    assert found <= heard
    assert index.heard(spoken) == heard  # what is kept between events changes nothing
    allowing = [KeywordMatcher([p], fuzzy=fuzzy, allow_negated=True) for p in phrases]
    found_or_negated = {i for i, matcher in enumerate(allowing) if matcher.find(spoken) is not None}
    assert found <= found_or_negated <= heard
    for i, matcher in enumerate(matchers):
        hit, negated = matcher.search(spoken)
        assert (hit is not None or negated is not None) is (i in found_or_negated)


# -- plain JSONPaths ----------------------------------------------------------------------

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3))
DOCS = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "0"]), inner, max_size=3)
    ),
    max_leaves=12,
)
STEPS = st.lists(
    st.sampled_from([".a", ".b", "['a']", "[0]", "[1]", "[-1]", "[5]", '."0"']), max_size=4
)


@given(DOCS, STEPS)
def test_plain_paths_read_directly_select_what_jsonpath_ng_selects(
    doc: Any, steps: list[str]
) -> None:
    expression = "$" + "".join(steps)
    assert plain_steps(expression) is not None
    assert select(expression, doc) == select_walked(expression, doc)


def test_template_conditions_comparing_a_field_with_a_text_are_looked_up() -> None:
    names = frozenset({"event", "memory"})
    found = template_equality("{{ memory.structured.title == 'Plan' }}", names)
    assert found == ("$.structured.title", "Plan")
    assert template_equality("{{ 'Plan' == event['structured'].title }}", names) == found
    for source in (
        "{{ memory.structured.title != 'Plan' }}",
        "{{ memory.structured.count == 3 }}",  # int.real is a number too: not only keys
        "{{ memory.title == 'Plan' and true }}",
        "{{ memory.title == 'Plan' }} {{ 1 }}",
        "{{ segments.title == 'Plan' }}",
    ):
        assert template_equality(source, names) is None, source


def test_other_paths_are_walked_by_jsonpath_ng() -> None:
    for expression in ("$.a[*]", "$..a", "$.a[0,1]", "$.a[?(@.b == 1)]", "$.a[1:]"):
        assert plain_steps(expression) is None
    doc = {"a": [{"b": 1}, {"b": 2}]}
    assert select("$.a[?(@.b == 1)]", doc) == [{"b": 1}]
