"""Keyword triggers on spoken text (engine.rules.spoken): word boundaries, case and
punctuation insensitive.

Spoken text is the event's segments as one word stream (so a phrase split across segments,
or across two transcript calls of one session, still matches). Only a hit that ends in a
segment new to this call counts, so a segment Omi sends again never fires twice.

A hit right after a negation in its clause ("don't turn on the lights") does not count
unless the matcher allows negated phrases (engine.rules.negation says what negates).

A phrase may hold slots ("remind me to {task}"): engine.rules.slots says what they capture
and when a hit with a slot still being spoken fires; such a phrase scans a wider window
(`KeywordMatcher.lookback_words`), to hold the phrase and its slots.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.fuzz import ratio

from engine.rules.filters import speaker_label
from engine.rules.slots import (
    MAX_SLOT_WORDS,
    SlotClock,
    SlotMatch,
    SlotPattern,
    slot_matches,
    slot_pattern,
)
from engine.rules.spoken import LOOKBACK_WORDS, SpokenText, normalize_words

FUZZY_TOKEN_SCORE = 70.0  # per word, for words of 3+ letters
FUZZY_PHRASE_SCORE = 85.0  # whole phrase, when recognition split or joined words
TICK_EVERY = 256  # window starts, or hits, looked at between two checks of the time budget


@dataclass(frozen=True)
class KeywordHit:
    phrase: str
    text: str
    speaker: str
    negated_by: str = ""  # the negation cue before the phrase ("dont"), when negated
    # what each slot of the phrase captured, as written (SpokenText.said)
    slots: dict[str, str] = field(default_factory=dict, hash=False)

    def as_context(self) -> dict[str, Any]:
        return {
            "phrase": self.phrase,
            "text": self.text,
            "speaker": self.speaker,
            "slots": dict(self.slots),
        }


@dataclass(frozen=True)
class Phrase:
    text: str
    words: tuple[str, ...]  # with slots: the words of its literal parts
    slots: SlotPattern | None = None

    @classmethod
    def of(cls, text: str) -> Phrase:
        """A phrase as written; SlotSyntax when its slots are ill formed."""
        pattern = slot_pattern(text)
        if pattern is None:
            return cls(text, tuple(normalize_words(text)))
        return cls(text, tuple(w for part in pattern.literals for w in part), pattern)


@dataclass(frozen=True)
class Scan:
    """What KeywordMatcher.scan found: the first hit that fires, else the first negated
    one, and the first hit whose slot is still being spoken (with that slot's name)."""

    hit: KeywordHit | None = None
    negated: KeywordHit | None = None
    waiting: tuple[KeywordHit, str] | None = None


NO_WAIT = SlotClock()  # neither a closing evaluation nor a call after a slot's wait


class KeywordMatcher:
    """Phrases compiled at load; `find` scans a SpokenText for the first new hit that is
    not negated (or any hit, with `allow_negated`)."""

    def __init__(
        self, phrases: Sequence[str], fuzzy: bool = False, *, allow_negated: bool = False
    ) -> None:
        self.phrases = [Phrase.of(p) for p in phrases]
        self.phrases = [p for p in self.phrases if p.words]
        self.fuzzy = fuzzy
        self.allow_negated = allow_negated
        self.has_slots = any(p.slots is not None for p in self.phrases)
        self.has_trailing_slots = any(p.slots and p.slots.trailing for p in self.phrases)
        # words before a call's new ones to scan: a hit completed by the first new word
        # may hold its phrase and every slot in old words
        self.lookback_words = LOOKBACK_WORDS
        for phrase in self.phrases:
            if phrase.slots is not None:
                # a fuzzy literal part may be heard one word wider
                literal = len(phrase.words) + len(phrase.slots.literals)
                size = literal + MAX_SLOT_WORDS * len(phrase.slots.names) + 1
                self.lookback_words = max(self.lookback_words, size)

    def find(
        self, spoken: SpokenText, tick: Callable[[], None] = lambda: None
    ) -> KeywordHit | None:
        """The first phrase heard in the new words; `tick` is called now and then (the
        matcher's time budget raises from it)."""
        return self.search(spoken, tick)[0]

    def search(
        self, spoken: SpokenText, tick: Callable[[], None] = lambda: None
    ) -> tuple[KeywordHit | None, KeywordHit | None]:
        """(the first hit, None), or (None, the first negated hit or None)."""
        found = self.scan(spoken, tick)
        return found.hit, found.negated

    def scan(
        self,
        spoken: SpokenText,
        tick: Callable[[], None] = lambda: None,
        clock: SlotClock = NO_WAIT,
    ) -> Scan:
        """The phrases in listed order: the first that fires wins; `clock` says what an
        open slot does (engine.rules.slots)."""
        negated: KeywordHit | None = None
        waiting: tuple[KeywordHit, str] | None = None
        for phrase in self.phrases:
            tick()
            if phrase.slots is not None:
                hit, cue_hit, open_hit = self._scan_slots(phrase, phrase.slots, spoken, tick, clock)
                if hit is not None:
                    return Scan(hit)
                negated = negated or cue_hit
                waiting = waiting or open_hit
                continue
            negated_starts: set[int] = set()  # negation depends on the start only
            spans = self._exact(phrase, spoken)
            if self.fuzzy:
                spans = itertools.chain(spans, self._fuzzy(phrase, spoken, tick))
            for start, end in spans:
                if start in negated_starts:
                    continue
                cue = None if self.allow_negated else spoken.negation(start)
                if cue is None:
                    return Scan(self._hit(phrase, spoken, start, end))
                negated_starts.add(start)
                if negated is None:
                    negated = self._hit(phrase, spoken, start, end, " ".join(cue))
        return Scan(None, negated, waiting)

    def _scan_slots(
        self,
        phrase: Phrase,
        pattern: SlotPattern,
        spoken: SpokenText,
        tick: Callable[[], None],
        clock: SlotClock,
    ) -> tuple[KeywordHit | None, KeywordHit | None, tuple[KeywordHit, str] | None]:
        """(the first hit that fires, the first negated one, the first open one)."""
        negated = waiting = None

        def literal(words: Sequence[str], start: int, part: tuple[str, ...]) -> int | None:
            return literal_end(words, start, part, fuzzy=self.fuzzy)

        found = slot_matches(pattern, spoken, clock, literal, fuzzy=self.fuzzy, tick=tick)
        for match in found:
            if match.state == "old":
                continue
            cue = None if self.allow_negated else spoken.negation(match.start)
            if cue is not None:
                negated = negated or self._slot_hit(phrase, spoken, match, " ".join(cue))
            elif match.state == "fires":
                return self._slot_hit(phrase, spoken, match), None, None
            elif waiting is None:
                waiting = (self._slot_hit(phrase, spoken, match), match.spans[-1][0])
        return None, negated, waiting

    def _slot_hit(
        self, phrase: Phrase, spoken: SpokenText, match: SlotMatch, negated_by: str = ""
    ) -> KeywordHit:
        hit = self._hit(phrase, spoken, match.start, match.end, negated_by)
        slots = {name: spoken.said(start, end) for name, start, end in match.spans}
        return KeywordHit(hit.phrase, hit.text, hit.speaker, hit.negated_by, slots)

    def all_hits(
        self, spoken: SpokenText, tick: Callable[[], None] = lambda: None
    ) -> list[tuple[int, KeywordHit]]:
        """Every hit ending in a new word that is not negated (or any, with
        `allow_negated`), in order, with the word it ends before; hits of several
        phrases (or fuzzy widths) that overlap count once."""
        spans: dict[int, tuple[int, Phrase]] = {}
        for phrase in self.phrases:
            tick()
            if phrase.slots is not None:
                continue  # counting slot phrases is refused when rules load
            found = self._exact(phrase, spoken)
            if self.fuzzy:
                found = itertools.chain(found, self._fuzzy(phrase, spoken, tick))
            for start, end in found:
                spans.setdefault(start, (end, phrase))
        hits: list[tuple[int, KeywordHit]] = []
        taken_to = 0
        for count, start in enumerate(sorted(spans)):
            if count % TICK_EVERY == 0:
                tick()  # a session of thousands of mentions stays within the budget
            end, phrase = spans[start]
            if start < taken_to:
                continue
            if not self.allow_negated and spoken.negation(start) is not None:
                continue
            hits.append((end, self._hit(phrase, spoken, start, end)))
            taken_to = end
        return hits

    def _exact(self, phrase: Phrase, spoken: SpokenText) -> Iterator[tuple[int, int]]:
        size = len(phrase.words)
        for start in spoken.positions.get(phrase.words[0], ()):
            end = start + size
            if end - 1 >= spoken.first_new_word and tuple(spoken.words[start:end]) == phrase.words:
                yield start, end

    def _fuzzy(
        self, phrase: Phrase, spoken: SpokenText, tick: Callable[[], None]
    ) -> Iterator[tuple[int, int]]:
        size = len(phrase.words)
        joined = " ".join(phrase.words)
        shortest, longest = _similar_lengths(len(joined))
        initial = joined[0]
        words = spoken.words
        # text length of words[a:b] joined by spaces is ends[b] - ends[a] - 1
        ends = [0]
        for word in words:
            ends.append(ends[-1] + len(word) + 1)
        close: dict[tuple[str, str], bool] = {}  # each (phrase word, heard word) scored once

        def word_close(expected: str, heard: str) -> bool:
            known = close.get((expected, heard))
            if known is None:
                known = close[(expected, heard)] = _word_close(expected, heard)
            return known

        first = max(0, spoken.first_new_word - size)  # a hit must end in a new word
        for start in range(first, len(words)):
            if (start - first) % TICK_EVERY == 0:
                tick()
            for width in (size, size - 1, size + 1):
                end = start + width
                if width < 1 or end > len(words) or end - 1 < spoken.first_new_word:
                    continue
                if width == size:
                    if all(word_close(a, words[start + i]) for i, a in enumerate(phrase.words)):
                        yield start, end
                        break
                    continue
                if words[start][0] != initial:
                    continue  # split or joined words keep their first letter
                if not shortest <= ends[end] - ends[start] - 1 <= longest:
                    continue  # too different in length to reach the score
                window = " ".join(words[start:end])
                if ratio(joined, window, score_cutoff=FUZZY_PHRASE_SCORE):
                    yield start, end
                    break

    def _hit(
        self, phrase: Phrase, spoken: SpokenText, start: int, end: int, negated_by: str = ""
    ) -> KeywordHit:
        first, last = spoken.word_segment[start], spoken.word_segment[end - 1]
        spanned = spoken.segments[first : last + 1]
        text = " ".join(str(s.get("text") or "").strip() for s in spanned)
        return KeywordHit(phrase.text, text, speaker_label(spoken.segments[last]), negated_by)


def _similar_lengths(length: int) -> tuple[float, float]:
    """The text lengths that can score FUZZY_PHRASE_SCORE against one of `length`:
    ratio is at most 2 * min / (a + b)."""
    share = FUZZY_PHRASE_SCORE / 100
    return length * share / (2 - share), length * (2 - share) / share


def literal_end(
    words: Sequence[str], start: int, literal: tuple[str, ...], *, fuzzy: bool
) -> int | None:
    """Where a slot phrase's literal part heard from `words[start]` ends, or None. Fuzzy,
    it is heard like a fuzzy phrase: every word close, or a window of its width or one
    word wider or narrower scoring FUZZY_PHRASE_SCORE ("remind me too" for "remind me to")."""
    size = len(literal)
    if tuple(words[start : start + size]) == literal:
        return start + size
    if not fuzzy:
        return None
    joined = " ".join(literal)
    for width in (size, size + 1, size - 1):
        end = start + width
        if width < 1 or end > len(words):
            continue
        window = words[start:end]
        if width == size and all(map(_word_close, literal, window)):
            return end
        if width != size and window[0][0] != joined[0]:
            continue  # split or joined words keep their first letter
        if ratio(joined, " ".join(window), score_cutoff=FUZZY_PHRASE_SCORE):
            return end
    return None


def _word_close(expected: str, heard: str) -> bool:
    if expected == heard:
        return True
    if len(expected) < 3:
        return False
    return ratio(expected, heard) >= FUZZY_TOKEN_SCORE
