"""Every keyword phrase of every rule, searched in one pass over an event's words.

`PhraseIndex.heard(spoken)` answers which phrases may be heard in an event, so a rule whose
phrases are not is never scanned phrase by phrase. It is a prefilter: it may name a phrase
that KeywordMatcher then does not find (a fuzzy near miss, a hit only in old words), never
the other way round.

- Exact phrases: one Aho-Corasick automaton over the words joined by single spaces, each
  phrase stored as " w1 w2 " so it matches whole words only (words hold no spaces).
- Fuzzy phrases (KeywordMatcher._fuzzy): a hit of the phrase's own width needs every phrase
  word close to a heard word; a hit one word wider or narrower needs a window starting with
  the phrase's first letter that scores near FUZZY_PHRASE_SCORE. Both are looked for with
  rapidfuzz's `process.extract` over the distinct phrases and words, with cutoffs a point
  below the matcher's, so rounding can only let more through.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import ahocorasick
from rapidfuzz import process
from rapidfuzz.fuzz import ratio

from engine.rules.keywords import FUZZY_PHRASE_SCORE, FUZZY_TOKEN_SCORE, Phrase
from engine.rules.spoken import SpokenText

_MARGIN = 1.0  # score points below the matcher's cutoffs (float rounding only widens)
_SHORT_WORD = 3  # phrase words shorter than this must be heard exactly (keywords._word_close)
_REMEMBERED = 65_536  # heard words and windows whose fuzzy matches are kept between events
_TICK_EVERY = 64  # heard words or windows looked at between two checks of the time budget


def reachable(length: int, longest: int, cutoff: float) -> bool:
    """Whether a text of `length` characters may score `cutoff` (0-100) by ratio against
    one no longer than `longest`. Ratio is at most 2 * shorter / (both lengths): a text
    longer than `longest` scores best against the longest, so one much longer never
    reaches the cutoff (nor is it remembered: payload text picks those keys)."""
    return length <= longest or 200 * longest >= cutoff * (length + longest)


class PhraseIndex:
    """The phrases of many keyword conditions; `heard` gives the ids of those that may occur.

    A phrase id is its position in the order `add` was called."""

    def __init__(self) -> None:
        self._automaton = ahocorasick.Automaton()
        self._exact_ids: dict[tuple[str, ...], list[int]] = {}
        # fuzzy: phrase word -> phrases (id, words); (size, first letter) -> joined phrases
        self._fuzzy: list[tuple[int, tuple[str, ...]]] = []
        self._fuzzy_words: set[str] = set()
        self._by_rarest: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        self._long_words: list[str] = []
        self._longest_word = 0
        self._by_shape: dict[tuple[int, str], dict[str, list[int]]] = defaultdict(dict)
        self._shapes: dict[tuple[int, str], tuple[list[str], list[list[int]]]] = {}
        self._longest_joined: dict[int, int] = {}  # phrase size -> its longest joined text
        self._sizes_by_initial: dict[str, set[int]] = defaultdict(set)
        # what a heard word is close to, and which phrases a window scores against, do not
        # change from one event to the next: speech repeats its words, so keep them
        self._close_to: dict[str, list[str]] = {}
        self._window_hits: dict[tuple[int, str], list[int]] = {}
        self.count = 0

    def add(self, phrase: Phrase, *, fuzzy: bool) -> int:
        phrase_id = self.count
        self.count += 1
        self._exact_ids.setdefault(phrase.words, []).append(phrase_id)
        if fuzzy:
            self._fuzzy.append((phrase_id, phrase.words))
            self._fuzzy_words.update(phrase.words)
            joined = " ".join(phrase.words)
            shape = (len(phrase.words), joined[0])
            self._by_shape[shape].setdefault(joined, []).append(phrase_id)
            self._sizes_by_initial[joined[0]].add(len(phrase.words))
        return phrase_id

    def build(self) -> PhraseIndex:
        for words, ids in self._exact_ids.items():
            self._automaton.add_word(" " + " ".join(words) + " ", ids)
        if self._exact_ids:
            self._automaton.make_automaton()
        self._long_words = sorted(w for w in self._fuzzy_words if len(w) >= _SHORT_WORD)
        self._longest_word = max(map(len, self._long_words), default=0)
        # each fuzzy phrase filed under its rarest word: few phrases to test per close word
        uses = Counter(w for _id, phrase in self._fuzzy for w in set(phrase))
        for phrase_id, phrase in self._fuzzy:
            rarest = min(phrase, key=lambda w: uses[w])
            self._by_rarest.setdefault(rarest, []).append((phrase_id, phrase))
        self._shapes = {
            shape: (list(phrases), list(phrases.values()))
            for shape, phrases in self._by_shape.items()
        }
        for (size, _initial), phrases in self._by_shape.items():
            longest = max(map(len, phrases))
            self._longest_joined[size] = max(self._longest_joined.get(size, 0), longest)
        return self

    def heard(self, spoken: SpokenText, tick: Callable[[], None] = lambda: None) -> set[int]:
        """Ids of the phrases that may be heard in `spoken`'s new words; `tick` is called
        now and then (the time budget: it may raise)."""
        found: set[int] = set()
        words = spoken.words
        if not words:
            return found
        if self._exact_ids:
            found.update(self._exact(spoken))
        if self._fuzzy:
            found.update(self._close_words(words, tick))
            found.update(self._close_windows(words, tick))
        return found

    def _exact(self, spoken: SpokenText) -> Iterable[int]:
        text = " " + " ".join(spoken.words) + " "
        # ends[i]: the index in `text` of the space after word i
        ends, at = [], 0
        for word in spoken.words:
            at += 1 + len(word)
            ends.append(at)
        for end, ids in self._automaton.iter(text):
            if bisect_left(ends, end) >= spoken.first_new_word:  # the hit ends in a new word
                yield from ids

    def _close_words(self, words: list[str], tick: Callable[[], None]) -> Iterable[int]:
        """Fuzzy phrases whose every word is close to some heard word (a same-width hit)."""
        heard = set(words)
        close = self._fuzzy_words & heard
        if self._long_words:
            cutoff = FUZZY_TOKEN_SCORE - _MARGIN
            for count, word in enumerate(heard):
                if count % _TICK_EVERY == 0:
                    tick()
                if reachable(len(word), self._longest_word, cutoff):
                    close.update(self._close_long_words(word))
        for word in close:
            for phrase_id, phrase in self._by_rarest.get(word, ()):
                if all(w in close for w in phrase):
                    yield phrase_id

    def _close_long_words(self, heard: str) -> list[str]:
        close = self._close_to.get(heard)
        if close is None:
            cutoff = FUZZY_TOKEN_SCORE - _MARGIN
            found = process.extract(
                heard, self._long_words, scorer=ratio, score_cutoff=cutoff, limit=None
            )
            close = [match for match, _score, _index in found]
            _remember(self._close_to, heard, close)
        return close

    def _close_windows(self, words: list[str], tick: Callable[[], None]) -> Iterable[int]:
        """Fuzzy phrases a window one word wider or narrower may score against."""
        cutoff = FUZZY_PHRASE_SCORE - _MARGIN
        for start, word in enumerate(words):
            if start % _TICK_EVERY == 0:
                tick()
            initial = word[0]
            for size in self._sizes_by_initial.get(initial, ()):
                for width in (size - 1, size + 1):
                    if width < 1 or start + width > len(words):
                        continue
                    window = " ".join(words[start : start + width])
                    if not reachable(len(window), self._longest_joined[size], cutoff):
                        continue
                    hits = self._window_hits.get((size, window))
                    if hits is None:
                        joined, ids = self._shapes[(size, initial)]
                        found = process.extract(
                            window, joined, scorer=ratio, score_cutoff=cutoff, limit=None
                        )
                        hits = [i for _joined, _score, index in found for i in ids[index]]
                        _remember(self._window_hits, (size, window), hits)
                    yield from hits


def _remember(memory: dict[Any, list[Any]], key: Any, value: list[Any]) -> None:
    if len(memory) >= _REMEMBERED:
        memory.clear()  # bounded: a long run of new words starts the memory afresh
    memory[key] = value
