"""Slots in keyword phrases: `remind me to {task}` captures what follows the words into
`match.slots.task`.

A phrase is split into literal parts and slots before it is normalized, so `{task}` is
never a word to hear. The literal parts match like phrases do (word boundaries, case and
punctuation insensitive, `fuzzy`, negation before the first word, speaker filter); a slot
takes 1 to MAX_SLOT_WORDS words:

- between two literal parts, the fewest words before the next part (it may run across
  segments of the speaker's stream);
- at the end of the phrase, the words up to the next pause: a sentence break after a word
  (`. ? ! ;`), or the end of a segment followed by another speaker's segment or by one
  starting more than SLOT_PAUSE_SECONDS after it ends; a slot of MAX_SLOT_WORDS words stops
  there.

A trailing slot that reaches the end of the words heard so far without a pause is still
being spoken (open): the rule waits for the next call, or for a closing evaluation once its
`slot_wait` is over, which closes the slot at the end of the words heard (SlotClock).

A hit fires in the call that holds its completing evidence, so it fires once over a
session however the calls split it: the last word of its last literal part (no trailing
slot), the word before the sentence break, the first word of the segment after the pause,
or the end of the words in a closing evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.rules.filters import speaker_label
from engine.rules.spoken import SpokenText, normalize_words

MAX_SLOTS = 4  # per phrase
MAX_SLOT_WORDS = 30  # a slot stops after this many words
SLOT_PAUSE_SECONDS = 2.0  # a gap between two segments longer than this is a pause
DEFAULT_SLOT_WAIT = 10.0  # seconds an open slot waits for more speech (`slot_wait`)
MAX_SLOT_WAIT = 120.0

_SLOT = re.compile(r"\{([^{}]*)\}")


class SlotSyntax(ValueError):
    """A phrase's slots are not well formed (the message names the phrase)."""


@dataclass(frozen=True)
class SlotPattern:
    """A phrase with slots: literal parts (normalized words), with `names[i]` between
    `literals[i]` and `literals[i + 1]`, and the last name after the last part when
    `trailing`."""

    literals: tuple[tuple[str, ...], ...]
    names: tuple[str, ...]
    trailing: bool


def slot_pattern(text: str) -> SlotPattern | None:
    """The slots of a phrase (None: a plain phrase); SlotSyntax when they are ill formed."""
    if "{" not in text and "}" not in text:
        return None
    pieces = _SLOT.split(text)
    parts, names = pieces[0::2], [name.strip() for name in pieces[1::2]]
    if any("{" in part or "}" in part for part in parts):
        raise SlotSyntax(f'"{text}" has a brace that opens or closes no slot (write {{name}})')
    for name in names:
        if not name.isidentifier():
            raise SlotSyntax(
                f'slot {{{name}}} in "{text}" is not a name (letters, digits and _, '
                "not starting with a digit)"
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SlotSyntax(f'slot {{{name}}} appears twice in "{text}"')
        seen.add(name)
    if len(names) > MAX_SLOTS:
        raise SlotSyntax(f'"{text}" has {len(names)} slots; a phrase holds at most {MAX_SLOTS}')
    literals = [tuple(normalize_words(part)) for part in parts]
    if not any(literals):
        raise SlotSyntax(f'"{text}" has no word besides its slots')
    if not literals[0]:
        raise SlotSyntax(f'"{text}" starts with a slot ({{{names[0]}}}); begin it with a word')
    for index in range(1, len(literals) - 1):
        if not literals[index]:
            raise SlotSyntax(
                f'slots {{{names[index - 1]}}} and {{{names[index]}}} in "{text}" are next '
                "to each other; put a word between them"
            )
    trailing = not literals[-1]
    return SlotPattern(tuple(w for w in literals if w), tuple(names), trailing)


State = Literal["fires", "open", "old"]


@dataclass(frozen=True)
class SlotClock:
    """What the time says about open slots, for one rule's `slot_wait`."""

    # what the end of the words heard does to a slot that reaches it: "open" (it waits),
    # "fires" (a closing evaluation once the wait is over closes it there) or "old" (an
    # earlier closing evaluation closed it there)
    end: State = "open"
    # this call came `slot_wait` or more after the last one that brought speech: a slot
    # open at the end of that call was closed there (and fired) by a closing evaluation
    waited: bool = False


# where a literal part heard from words[start] ends, or None: (words, start, literal)
LiteralEnd = Callable[[Sequence[str], int, tuple[str, ...]], "int | None"]


@dataclass(frozen=True)
class SlotMatch:
    start: int  # the first literal word
    end: int  # after the hit's last word
    spans: tuple[tuple[str, int, int], ...]  # (slot name, first word, after its last word)
    state: State  # fires: complete with new evidence; old: completed in an earlier call


def slot_matches(
    pattern: SlotPattern,
    spoken: SpokenText,
    clock: SlotClock,
    literal_end: LiteralEnd,
    *,
    fuzzy: bool,
    tick: Callable[[], None] = lambda: None,
) -> Iterator[SlotMatch]:
    """Every hit of `pattern` in `spoken`, complete or open, in order of its start;
    `literal_end` matches a literal part (exactly, or fuzzily: any word may start one)."""
    words = spoken.words
    first = pattern.literals[0]
    starts: Sequence[int] = range(len(words)) if fuzzy else spoken.positions.get(first[0], [])
    for count, start in enumerate(starts):
        if count % 64 == 0:
            tick()
        at = literal_end(words, start, first)
        if at is None:
            continue
        spans: list[tuple[str, int, int]] = []
        for name, literal in zip(pattern.names, pattern.literals[1:], strict=False):
            found = _between(words, at, literal, literal_end)
            if found is None:
                break
            spans.append((name, at, found[0]))
            at = found[1]
        else:
            if not pattern.trailing:
                state: State = "fires" if spoken.is_new(at - 1) else "old"
                yield SlotMatch(start, at, tuple(spans), state)
                continue
            tail = _trailing(spoken, at, clock)
            if tail is not None:
                end, state = tail
                yield SlotMatch(start, end, (*spans, (pattern.names[-1], at, end)), state)


def _between(
    words: Sequence[str], at: int, literal: tuple[str, ...], literal_end: LiteralEnd
) -> tuple[int, int] | None:
    """A middle slot from `at`: (its end, the end of the literal after it), fewest words."""
    for end in range(at + 1, min(at + MAX_SLOT_WORDS, len(words) - 1) + 1):
        after = literal_end(words, end, literal)
        if after is not None:
            return end, after
    return None


def _trailing(spoken: SpokenText, at: int, clock: SlotClock) -> tuple[int, State] | None:
    """A trailing slot from word `at`: (after its last word, its state), or None when it is
    empty or runs into speech that was not scanned."""
    last = at - 1  # the last word before the slot's next one
    while True:
        if last >= at and last - at + 1 == MAX_SLOT_WORDS:
            state: State | None = "fires" if spoken.is_new(last) else "old"
            break
        state, goes_on = _after(spoken, last, clock)
        if not goes_on:
            break
        last += 1
    if state is None or (state != "open" and last < at):
        return None
    return last + 1, state


def _after(spoken: SpokenText, last: int, clock: SlotClock) -> tuple[State | None, bool]:
    """What follows word `last` for a trailing slot: (how it closes, False) at a pause,
    ("open", False) at the end of the words heard, (None, True) when it goes on, and
    (None, False) when it cannot tell (speech not scanned)."""
    words, segment_of = spoken.words, spoken.word_segment
    segment = segment_of[last]
    if spoken.sentence_end(last):
        return ("fires" if spoken.is_new(last) else "old"), False
    if last + 1 < len(words) and segment_of[last + 1] == segment:
        return None, True
    if spoken.truncated and last + 1 >= len(words):
        return None, False
    following = spoken.next_spoken(segment)
    if following is None:
        return clock.end, False
    new = following >= spoken.first_new_segment
    if clock.waited and new and segment < spoken.first_new_segment:
        return "old", False  # closed at the end of the last call, by the closing evaluation
    if is_pause(spoken.segments[segment], spoken.segments[following]):
        return ("fires" if new else "old"), False
    if last + 1 < len(words) and segment_of[last + 1] == following:
        return None, True
    return None, False


def is_pause(segment: Mapping[str, Any], following: Mapping[str, Any]) -> bool:
    """Whether the end of `segment` is a pause before `following`: another speaker, or a
    gap of more than SLOT_PAUSE_SECONDS (when both times are numbers)."""
    if _speaker(segment) != _speaker(following):
        return True
    end, start = _time(segment.get("end")), _time(following.get("start"))
    return end is not None and start is not None and start - end > SLOT_PAUSE_SECONDS


def _speaker(segment: Mapping[str, Any]) -> tuple[bool, str]:
    return bool(segment.get("is_user")), speaker_label(segment)


def _time(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
