"""Keyword triggers on spoken text: word boundaries, case and punctuation insensitive.

Spoken text is the event's segments as one word stream (so a phrase split across segments,
or across two transcript calls of one session, still matches). Only a hit that ends in a
segment new to this call counts, so a segment Omi sends again never fires twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from rapidfuzz.fuzz import ratio

from engine.filters import speaker_label

_APOSTROPHES = re.compile(r"['’`´]")
_NON_WORD = re.compile(r"[^\w]+|_+")

FUZZY_TOKEN_SCORE = 70.0  # per word, for words of 3+ letters
FUZZY_PHRASE_SCORE = 85.0  # whole phrase, when recognition split or joined words


def normalize_words(text: str) -> list[str]:
    """Lower-case words with punctuation dropped: "I'll turn ON!" -> ["ill", "turn", "on"]."""
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", text.lower())).split()


SpeakerFilter = Literal["user", "others", "any"]


def is_user_speech(segment: Mapping[str, Any]) -> bool:
    return bool(segment.get("is_user"))


@dataclass
class SpokenText:
    """The words of some segments, each word knowing its segment; words from
    `first_new_segment` on are new in this call."""

    segments: Sequence[Mapping[str, Any]]
    first_new_segment: int = 0
    words: list[str] = field(default_factory=list)
    word_segment: list[int] = field(default_factory=list)
    first_new_word: int = 0

    @classmethod
    def of(
        cls,
        segments: Sequence[Mapping[str, Any]],
        first_new_segment: int = 0,
        speaker: SpeakerFilter = "any",
    ) -> SpokenText:
        spoken = cls(segments, first_new_segment)
        spoken.first_new_word = -1
        for index, segment in enumerate(segments):
            if not isinstance(segment, Mapping):
                continue
            if speaker == "user" and not is_user_speech(segment):
                continue
            if speaker == "others" and is_user_speech(segment):
                continue
            if index >= first_new_segment and spoken.first_new_word < 0:
                spoken.first_new_word = len(spoken.words)
            words = normalize_words(str(segment.get("text") or ""))
            spoken.words.extend(words)
            spoken.word_segment.extend([index] * len(words))
        if spoken.first_new_word < 0:
            spoken.first_new_word = len(spoken.words)
        return spoken

    @cached_property
    def positions(self) -> dict[str, list[int]]:
        index: dict[str, list[int]] = {}
        for position, word in enumerate(self.words):
            index.setdefault(word, []).append(position)
        return index


@dataclass(frozen=True)
class KeywordHit:
    phrase: str
    text: str
    speaker: str

    def as_context(self) -> dict[str, str]:
        return {"phrase": self.phrase, "text": self.text, "speaker": self.speaker}


@dataclass(frozen=True)
class Phrase:
    text: str
    words: tuple[str, ...]


class KeywordMatcher:
    """Phrases compiled at load; `find` scans a SpokenText for the first new hit."""

    def __init__(self, phrases: Sequence[str], fuzzy: bool = False) -> None:
        self.phrases = [Phrase(p, tuple(normalize_words(p))) for p in phrases]
        self.phrases = [p for p in self.phrases if p.words]
        self.fuzzy = fuzzy

    def find(self, spoken: SpokenText) -> KeywordHit | None:
        for phrase in self.phrases:
            span = self._exact(phrase, spoken)
            if span is None and self.fuzzy:
                span = self._fuzzy(phrase, spoken)
            if span is not None:
                return self._hit(phrase, spoken, *span)
        return None

    def _exact(self, phrase: Phrase, spoken: SpokenText) -> tuple[int, int] | None:
        size = len(phrase.words)
        for start in spoken.positions.get(phrase.words[0], ()):
            end = start + size
            if end - 1 >= spoken.first_new_word and tuple(spoken.words[start:end]) == phrase.words:
                return start, end
        return None

    def _fuzzy(self, phrase: Phrase, spoken: SpokenText) -> tuple[int, int] | None:
        size = len(phrase.words)
        joined = " ".join(phrase.words)
        words = spoken.words
        for start in range(len(words)):
            for width in (size, size - 1, size + 1):
                end = start + width
                if width < 1 or end > len(words) or end - 1 < spoken.first_new_word:
                    continue
                window = words[start:end]
                if width == size and all(
                    _word_close(a, b) for a, b in zip(phrase.words, window, strict=True)
                ):
                    return start, end
                if width != size and ratio(joined, " ".join(window)) >= FUZZY_PHRASE_SCORE:
                    return start, end
        return None

    def _hit(self, phrase: Phrase, spoken: SpokenText, start: int, end: int) -> KeywordHit:
        first, last = spoken.word_segment[start], spoken.word_segment[end - 1]
        spanned = spoken.segments[first : last + 1]
        text = " ".join(str(s.get("text") or "").strip() for s in spanned)
        return KeywordHit(phrase.text, text, speaker_label(spoken.segments[last]))


def _word_close(expected: str, heard: str) -> bool:
    if expected == heard:
        return True
    if len(expected) < 3:
        return False
    return ratio(expected, heard) >= FUZZY_TOKEN_SCORE
