"""Spoken text: an event's segments as one stream of normalized words, each word knowing
its segment, and which words are new in this call.

Words are lower-cased with punctuation dropped ("I'll turn ON!" -> ill turn on). A
transcript call scans its new words plus `lookback_words` words before them (not the whole
session again), and at most `max_chars` characters of words are scanned at all (the rest is
reported as `truncated`). What the punctuation said is kept where matching needs it: the
clause of each word (negation, engine.rules.negation), whether a sentence ends after it
(keyword slots, engine.rules.slots), and where each word is written in its segment's text
(the words a slot captured, as written).
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from engine.rules.negation import CLAUSE_BREAK, MAY_NEGATE, negation_before

_APOSTROPHES = re.compile(r"['’`´]")
_NON_WORD = re.compile(r"[^\w]+|_+")
_WORD_SPAN = re.compile(r"(?:[^\W_]|['’`´])+")  # a word as written: what normalize_words keeps

LOOKBACK_WORDS = 64  # words before a call's new ones a split phrase may start in
SENTENCE_BREAK = re.compile(r"[?!;]|\.(?!\w)")  # a pause for keyword slots; not "3.5"


def normalize_words(text: str) -> list[str]:
    """Lower-case words with punctuation dropped: "I'll turn ON!" -> ["ill", "turn", "on"]."""
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", text.lower())).split()


def clause_numbers(text: str, count: int) -> list[int]:
    """The clause (0, 1, ...) of each of the first `count` words of `text`; all 0 when the
    text holds fewer words (a segment cut at `max_chars` holds them all)."""
    numbers: list[int] = []
    for clause, part in enumerate(CLAUSE_BREAK.split(text)):
        numbers.extend([clause] * len(normalize_words(part)))
        if len(numbers) >= count:
            return numbers[:count]
    return [0] * count


def sentence_ends(text: str, count: int) -> list[bool]:
    """Whether a sentence break follows each of the first `count` words of `text`."""
    ends: list[bool] = []
    parts = SENTENCE_BREAK.split(text)
    for index, part in enumerate(parts):
        ends.extend([False] * len(normalize_words(part)))
        if index < len(parts) - 1 and ends:
            ends[-1] = True
        if len(ends) > count:
            break
    return (ends + [False] * count)[:count]


SpeakerFilter = Literal["user", "others", "any"]


def is_user_speech(segment: Mapping[str, Any]) -> bool:
    return bool(segment.get("is_user"))


def _spoken_by(segment: Any, speaker: SpeakerFilter) -> bool:
    if not isinstance(segment, Mapping):
        return False
    if speaker == "user":
        return is_user_speech(segment)
    if speaker == "others":
        return not is_user_speech(segment)
    return True


def _segment_words(segment: Mapping[str, Any]) -> list[str]:
    return normalize_words(str(segment.get("text") or ""))


def _window_start(
    segments: Sequence[Any], first_new: int, speaker: SpeakerFilter, lookback: int
) -> int:
    """The first segment to scan: enough old segments to hold `lookback` words."""
    start, words = first_new, 0
    while start > 0 and words < lookback:
        start -= 1
        if _spoken_by(segments[start], speaker):
            words += len(_segment_words(segments[start]))
    return start


@dataclass
class SpokenText:
    """The words of some segments, each word knowing its segment; words from
    `first_new_segment` on are new in this call."""

    segments: Sequence[Mapping[str, Any]]
    first_new_segment: int = 0
    words: list[str] = field(default_factory=list)
    word_segment: list[int] = field(default_factory=list)
    first_new_word: int = 0
    truncated: bool = False  # more speech than `max_chars`: the rest was not scanned
    max_chars: int | None = None
    _clause_cache: dict[int, list[int]] = field(default_factory=dict, repr=False)
    _sentence_cache: dict[int, list[bool]] = field(default_factory=dict, repr=False)
    _span_cache: dict[int, list[tuple[int, int]] | None] = field(default_factory=dict, repr=False)
    _next_cache: dict[int, int | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(
        cls,
        segments: Sequence[Mapping[str, Any]],
        first_new_segment: int = 0,
        speaker: SpeakerFilter = "any",
        *,
        lookback_words: int = LOOKBACK_WORDS,
        max_chars: int | None = None,
    ) -> SpokenText:
        spoken = cls(segments, first_new_segment, max_chars=max_chars)
        spoken.first_new_word = -1
        start = _window_start(segments, first_new_segment, speaker, lookback_words)
        chars = 0
        for index in range(start, len(segments)):
            segment = segments[index]
            if not _spoken_by(segment, speaker):
                continue
            if index >= first_new_segment and spoken.first_new_word < 0:
                spoken.first_new_word = len(spoken.words)
            if max_chars is None:
                words = _segment_words(segment)
            else:
                # normalize no more text than can fit (a 1 MB segment costs what 64 KiB do)
                text = str(segment.get("text") or "")
                room = 2 * (max_chars - chars) + 64
                words = normalize_words(text[:room])
                if len(text) > room:
                    words = words[:-1]  # the last word may be cut in half
                    spoken.truncated = True
                taken = 0
                while taken < len(words) and chars + len(words[taken]) <= max_chars:
                    chars += len(words[taken]) + 1
                    taken += 1
                if taken < len(words):
                    spoken.truncated = True
                words = words[:taken]
            spoken.words.extend(words)
            spoken.word_segment.extend([index] * len(words))
            if spoken.truncated:
                break
        if spoken.first_new_word < 0:
            spoken.first_new_word = len(spoken.words)
        return spoken

    def negation(self, start: int) -> tuple[str, ...] | None:
        """The cue negating a phrase heard from word `start` on, in the same segment."""
        if start == 0 or self.words[start - 1] not in MAY_NEGATE:
            return None  # the common case, decided without looking further
        segment = self.word_segment[start]
        first = bisect_left(self.word_segment, segment)
        numbers = self._clauses(segment, first)

        def same_clause(a: int, b: int) -> bool:
            return numbers[a - first] == numbers[b - first]

        return negation_before(self.words, start, same_clause, first)

    def _clauses(self, segment: int, first: int) -> list[int]:
        """The clause numbers of a segment's scanned words, worked out once per segment:
        a segment of a thousand "don't go" must not be split a thousand times."""
        known = self._clause_cache.get(segment)
        if known is None:
            count = bisect_left(self.word_segment, segment + 1) - first
            text = str(self.segments[segment].get("text") or "")
            known = self._clause_cache[segment] = clause_numbers(text, count)
        return known

    def is_new(self, word: int) -> bool:
        return word >= self.first_new_word

    def sentence_end(self, word: int) -> bool:
        """Whether a sentence break (`. ? ! ;`) follows word `word` in its segment."""
        segment = self.word_segment[word]
        first = bisect_left(self.word_segment, segment)
        known = self._sentence_cache.get(segment)
        if known is None:
            count = bisect_left(self.word_segment, segment + 1) - first
            text = str(self.segments[segment].get("text") or "")
            known = self._sentence_cache[segment] = sentence_ends(text, count)
        return known[word - first]

    def next_spoken(self, segment: int) -> int | None:
        """The next segment of the session (any speaker) that holds a word; looked up once
        per segment (every slot reaching a segment's end asks)."""
        if segment in self._next_cache:
            return self._next_cache[segment]
        found = None
        for index in range(segment + 1, len(self.segments)):
            following = self.segments[index]
            if isinstance(following, Mapping) and _segment_words(following):
                found = index
                break
        self._next_cache[segment] = found
        return found

    def said(self, start: int, end: int) -> str:
        """Words `start` to `end` as they were written (from the first word's first letter
        to the last word's last, punctuation between them kept; segments joined by a
        space), or as normalized words where the text cannot be lined up with them."""
        parts = []
        for segment, group in itertools.groupby(range(start, end), self.word_segment.__getitem__):
            taken = list(group)
            first = bisect_left(self.word_segment, segment)
            spans = self._spans(segment)
            if spans is None or taken[-1] - first >= len(spans):
                parts.append(" ".join(self.words[i] for i in taken))
                continue
            text = str(self.segments[segment].get("text") or "")
            parts.append(text[spans[taken[0] - first][0] : spans[taken[-1] - first][1]])
        return " ".join(parts)

    def _spans(self, segment: int) -> list[tuple[int, int]] | None:
        """Where each word of a segment is written in its text; None when the text's
        words do not line up one to one with normalize_words (rare letters that
        lower-case into two)."""
        if segment in self._span_cache:
            return self._span_cache[segment]
        text = str(self.segments[segment].get("text") or "")
        spans: list[tuple[int, int]] | None = []
        words: list[str] = []
        for found in _WORD_SPAN.finditer(text):
            normalized = normalize_words(found.group())
            if len(normalized) > 1:
                spans = None
                break
            if normalized and spans is not None:
                spans.append(found.span())
                words.extend(normalized)
        if spans is not None and words != normalize_words(text):
            spans = None
        self._span_cache[segment] = spans
        return spans

    @cached_property
    def positions(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for position, word in enumerate(self.words):
            index.setdefault(word, []).append(position)
        return index
