"""Keyword triggers on spoken text: word boundaries, case and punctuation insensitive.

Spoken text is the event's segments as one word stream (so a phrase split across segments,
or across two transcript calls of one session, still matches). Only a hit that ends in a
segment new to this call counts, so a segment Omi sends again never fires twice.

The work per event is bounded: a transcript call scans its new words plus the last
`LOOKBACK_WORDS` words before them (not the whole session again), and at most `max_chars`
characters of words are scanned at all (the rest is reported as not searched).

A hit right after a negation in its clause ("don't turn on the lights") does not count
unless the matcher allows negated phrases (engine.rules.negation says what negates).

A phrase may hold slots ("remind me to {task}"): engine.rules.slots says what they capture
and when a hit with a slot still being spoken fires; such a phrase scans a wider window
(`KeywordMatcher.lookback_words`), to hold the phrase and its slots.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from rapidfuzz.fuzz import ratio

from engine.rules.filters import speaker_label
from engine.rules.negation import CLAUSE_BREAK, MAY_NEGATE, negation_before
from engine.rules.slots import (
    MAX_SLOT_WORDS,
    SlotClock,
    SlotMatch,
    SlotPattern,
    sentence_ends,
    slot_matches,
    slot_pattern,
)

_APOSTROPHES = re.compile(r"['’`´]")
_NON_WORD = re.compile(r"[^\w]+|_+")
_WORD_SPAN = re.compile(r"(?:[^\W_]|['’`´])+")  # a word as written: what normalize_words keeps

FUZZY_TOKEN_SCORE = 70.0  # per word, for words of 3+ letters
FUZZY_PHRASE_SCORE = 85.0  # whole phrase, when recognition split or joined words
LOOKBACK_WORDS = 64  # words before a call's new ones a split phrase may start in
TICK_EVERY = 512  # window starts between two checks of the time budget


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


SpeakerFilter = Literal["user", "others", "any"]
TICK_EVERY = 256  # hits looked at between two checks of the time budget


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
            known = self._sentence_cache[segment] = sentence_ends(text, count, normalize_words)
        return known[word - first]

    def next_spoken(self, segment: int) -> int | None:
        """The next segment of the session (any speaker) that holds a word."""
        for index in range(segment + 1, len(self.segments)):
            following = self.segments[index]
            if isinstance(following, Mapping) and _segment_words(following):
                return index
        return None

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
        pattern = slot_pattern(text, normalize_words)
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
                size = len(phrase.words) + MAX_SLOT_WORDS * len(phrase.slots.names) + 1
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
