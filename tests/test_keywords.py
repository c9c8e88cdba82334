"""Keyword triggers: word boundaries, case and punctuation, speakers, fuzzy hearing, and
only new speech counting. Examples first, then hypothesis properties."""

from __future__ import annotations

import itertools
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.rules.keywords import KeywordMatcher
from engine.rules.spoken import LOOKBACK_WORDS, SpokenText, normalize_words
from tests.helpers import decision, event, load_ok, pipeline


def segment(text: str, *, user: bool = True, **extra: Any) -> dict[str, Any]:
    return {"text": text, "is_user": user, **extra}


def find(phrases: list[str], texts: list[str], *, fuzzy: bool = False) -> Any:
    spoken = SpokenText.of([segment(text) for text in texts])
    return KeywordMatcher(phrases, fuzzy=fuzzy).find(spoken)


def test_normalize_words() -> None:
    assert normalize_words("I'll turn ON the lights! check-in, Café_bar…") == [
        "ill",
        "turn",
        "on",
        "the",
        "lights",
        "check",
        "in",
        "café",
        "bar",
    ]


@pytest.mark.parametrize(
    ("phrase", "text", "found"),
    [
        ("lights", "Turn the lights on", True),
        ("lights", "Check the spotlights", False),
        ("lights", "lightswitch please", False),
        ("light", "the lights", False),
        ("turn on the lights", "Hey, TURN on... the LIGHTS!", True),
        ("turn on the lights", "turn on all the lights", False),
        ("I'll call", "ill call you", True),
        ("check in", "time to check-in", True),
        ("next sprint", "in the next, sprint", True),
        ("café", "Meet at the CAFÉ.", True),
    ],
)
def test_word_boundaries_case_and_punctuation(phrase: str, text: str, found: bool) -> None:
    assert (find([phrase], [text]) is not None) is found


def test_a_phrase_split_across_segments_matches_and_reports_them() -> None:
    hit = find(["turn on the lights"], ["ok, hey omi turn on the", "lights in the kitchen"])
    assert hit is not None
    assert hit.phrase == "turn on the lights"
    assert hit.text == "ok, hey omi turn on the lights in the kitchen"


def test_the_first_listed_phrase_that_occurs_wins() -> None:
    hit = find(["lights on", "turn on the lights"], ["turn on the lights", "lights on"])
    assert hit is not None and hit.phrase == "lights on"


def test_hit_names_the_speaker_of_its_last_segment() -> None:
    spoken = SpokenText.of(
        [segment("remind me", user=False, speaker_name="Sam"), segment("later", user=True)]
    )
    hit = KeywordMatcher(["remind me"]).find(spoken)
    assert hit is not None
    assert hit.as_context() == {
        "phrase": "remind me",
        "text": "remind me",
        "speaker": "Sam",
        "slots": {},
    }


def test_only_hits_ending_in_new_segments_count() -> None:
    segments = [segment("lights on please"), segment("turn on the"), segment("lights")]
    old_only = SpokenText.of(segments[:2], first_new_segment=2)
    assert KeywordMatcher(["lights on"]).find(old_only) is None
    spanning = SpokenText.of(segments, first_new_segment=2)
    hit = KeywordMatcher(["turn on the lights"]).find(spanning)
    assert hit is not None and hit.text == "turn on the lights"
    assert KeywordMatcher(["lights on"]).find(spanning) is None


@pytest.mark.parametrize(
    ("speaker", "phrase", "found"),
    [
        ("user", "remind me", True),
        ("user", "sounds good", False),
        ("others", "sounds good", True),
        ("others", "remind me", False),
        ("any", "sounds good", True),
        # words of other speakers never join a user's phrase
        ("user", "me sounds", False),
        ("any", "me sounds", True),
    ],
)
def test_speaker_filters(speaker: str, phrase: str, found: bool) -> None:
    segments = [segment("please remind me", user=True), segment("sounds good", user=False)]
    spoken = SpokenText.of(segments, speaker=speaker)  # type: ignore[arg-type]
    assert (KeywordMatcher([phrase]).find(spoken) is not None) is found


def test_new_speech_by_others_does_not_revive_an_old_user_hit() -> None:
    segments = [segment("remind me", user=True), segment("okay", user=False)]
    spoken = SpokenText.of(segments, first_new_segment=1, speaker="user")
    assert KeywordMatcher(["remind me"]).find(spoken) is None


@pytest.mark.parametrize(
    ("phrase", "heard", "fuzzy", "found"),
    [
        ("hey omi", "hey homie turn it on", True, True),
        ("hey omi", "hey homie turn it on", False, False),
        ("lights on", "the lightson now", True, True),
        ("turn on the lights", "turn on the light", True, True),
        ("turn on the lights", "turn on the light", False, False),
        ("hey omi", "hey tommy", True, False),
        ("hey omi", "hello world", True, False),
        # words under three letters must be heard exactly, even fuzzy
        ("turn on the lights", "turn in the lights", True, False),
    ],
)
def test_fuzzy(phrase: str, heard: str, fuzzy: bool, found: bool) -> None:
    assert (find([phrase], [heard], fuzzy=fuzzy) is not None) is found


def test_phrases_without_words_are_dropped() -> None:
    assert [p.words for p in KeywordMatcher(["!!", "Lights, ON"]).phrases] == [("lights", "on")]


# -- through a rule -------------------------------------------------------------------------

RULES = """
- id: user-lights
  trigger: transcript
  when:
    - keywords: [turn on the lights]
      speaker: user
  do:
    - notify:
        message: "{{ match.phrase }} | {{ match.text }} | {{ match.speaker }}"
- id: others-lights
  trigger: transcript
  when:
    - keywords: turn on the lights
      speaker: others
  do: [{log: {}}]
- id: strict-omi
  trigger: transcript
  when:
    - keywords: [hey omi]
  do: [{log: {}}]
- id: fuzzy-omi
  trigger: transcript
  when:
    - keywords: [hey omi]
      fuzzy: true
  do: [{log: {}}]
"""


def test_rules_see_speaker_fuzzy_and_match(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, RULES)
    segments = [
        segment("Hey homie, turn on the", user=True, speaker="SPEAKER_00"),
        segment("LIGHTS please!", user=True, speaker="SPEAKER_00"),
    ]
    outcome = pipeline(ruleset).process(event("transcript", segments), now=100.0)
    assert {d.rule.id for d in outcome.matched} == {"user-lights", "fuzzy-omi"}
    assert decision(outcome, "others-lights").reason == (
        "when[0]: no new speech by others says 'turn on the lights'"
    )
    assert decision(outcome, "strict-omi").reason == "when[0]: no new speech says 'hey omi'"
    (notify,) = [a for a in outcome.actions if a.rule_id == "user-lights"]
    assert notify.request.message == (
        "turn on the lights | Hey homie, turn on the LIGHTS please! | You"
    )


def test_memory_rules_match_keywords_in_the_transcript(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: deadline
        trigger: memory
        when:
          - keywords: [deadline]
        do: [{log: {}}]
        """,
    )
    doc = {"transcript_segments": [segment("The DEADLINE is Friday.", user=False)]}
    assert pipeline(ruleset).process(event("memory", doc), now=0.0).matched
    doc = {"transcript_segments": [segment("The deadlines are Friday.", user=False)]}
    assert not pipeline(ruleset).process(event("memory", doc), now=0.0).matched


# -- properties -----------------------------------------------------------------------------

WORD = st.text(alphabet=string.ascii_lowercase + "éü", min_size=1, max_size=8)
SEPARATOR = st.sampled_from([" ", "  ", ", ", "! ", " - ", "... ", "? "])


def _styled(words: list[str], separators: list[str], upper: list[bool]) -> str:
    text = ""
    for index, word in enumerate(words):
        text += word.upper() if upper[index % len(upper)] else word
        text += separators[index % len(separators)]
    return text


@settings(deadline=None, database=None, max_examples=150)
@given(
    before=st.lists(WORD, max_size=12),
    phrase=st.lists(WORD, min_size=1, max_size=4),
    after=st.lists(WORD, max_size=12),
    separators=st.lists(SEPARATOR, min_size=1, max_size=5),
    upper=st.lists(st.booleans(), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=30), max_size=3),
    fuzzy=st.booleans(),
)
def test_a_phrase_inserted_among_random_words_is_always_found(
    before: list[str],
    phrase: list[str],
    after: list[str],
    separators: list[str],
    upper: list[bool],
    cuts: list[int],
    fuzzy: bool,
) -> None:
    words = before + phrase + after
    # cut the word stream into segments at random word positions
    bounds = sorted({0, len(words), *(min(c, len(words)) for c in cuts)})
    texts = [_styled(words[a:b], separators, upper) for a, b in itertools.pairwise(bounds)]
    spoken = SpokenText.of([segment(text) for text in texts])
    hit = KeywordMatcher([" ".join(phrase)], fuzzy=fuzzy).find(spoken)
    assert hit is not None
    assert hit.phrase == " ".join(phrase)


@settings(deadline=None, database=None)
@given(words=st.lists(WORD, max_size=15), phrase=WORD)
def test_a_word_that_is_only_part_of_spoken_words_is_never_found(
    words: list[str], phrase: str
) -> None:
    # every spoken word is the phrase word with something glued on: never a whole-word match
    text = " ".join(f"x{word}{phrase}" for word in words)
    assert KeywordMatcher([phrase]).find(SpokenText.of([segment(text)])) is None


@settings(deadline=None, database=None)
@given(text=st.text(max_size=80))
def test_normalizing_is_idempotent(text: str) -> None:
    words = normalize_words(text)
    assert normalize_words(" ".join(words)) == words
    assert all(word == word.lower() and word.strip() == word and word for word in words)


# -- bounded work per call --------------------------------------------------------------------


def test_a_call_scans_its_new_words_and_a_short_look_back_not_the_whole_session() -> None:
    old = [segment("word " * 100) for _ in range(100)]  # 10,000 words heard before
    spoken = SpokenText.of([*old, segment("new words")], first_new_segment=100)
    assert len(spoken.words) == 102  # the last old segment (>= LOOKBACK_WORDS words) + new
    assert spoken.words[spoken.first_new_word :] == ["new", "words"]
    assert LOOKBACK_WORDS <= 100


def test_at_most_max_chars_of_speech_are_scanned() -> None:
    spoken = SpokenText.of([segment("abc " * 1000), segment("lights on")], max_chars=40)
    assert (len(spoken.words), spoken.truncated) == (10, True)
    assert KeywordMatcher(["lights on"]).find(spoken) is None
    whole = SpokenText.of([segment("abc " * 10), segment("lights on")], max_chars=50)
    assert whole.truncated is False
    assert KeywordMatcher(["lights on"]).find(whole) is not None


def test_fuzzy_matching_still_finds_split_and_joined_words_in_long_speech() -> None:
    filler = "the quick brown fox jumps over a lazy dog " * 500
    spoken = SpokenText.of([segment(filler + "hey homie turn the lights on")])
    hit = KeywordMatcher(["hey omi"], fuzzy=True).find(spoken)
    assert hit is not None and hit.phrase == "hey omi"
    joined = SpokenText.of([segment(filler + "please turnon the lights")])
    assert KeywordMatcher(["turn on the lights"], fuzzy=True).find(joined) is not None


def test_a_memory_keyword_past_the_scanned_text_says_what_was_not_searched(
    tmp_path: Path,
) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: deadline
        trigger: memory
        when:
          - keywords: [deadline]
        do: [{log: {}}]
        """,
    )
    long_talk = {"transcript_segments": [segment("blah " * 20_000 + "the deadline is friday")]}
    outcome = pipeline(ruleset).process(event("memory", long_talk))
    assert decision(outcome, "deadline").reason == (
        "when[0]: no new speech says 'deadline' (only the first 65536 characters of speech "
        "were searched; match_max_text)"
    )
