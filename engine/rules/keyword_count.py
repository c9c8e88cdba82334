"""`count:` on a keywords condition: fire when a phrase has been said `at_least` times
(within a window) in a session, the coach rule "you said 'basically' 5 times in 10 minutes".

Mentions are found again on every call in the session's kept segments, not kept in
counters: a segment sent twice is kept once, so it counts once, and replaying a session's
calls in order (why a rule did not fire) gives the same counts.

A mention is a hit of any of the condition's phrases (with its speaker, fuzzy and negation
options; hits that overlap count once). Its time is the `start` of the segment it ends in
(seconds from the conversation start; a segment without one counts as inside any window).

Counting goes through the mentions in order, as a run: a mention older than `within`
before the newest one leaves the run, and when the run holds `at_least` mentions the rule
fires on the newest one and the run starts again from zero. With `at_least: 3` and no window
it fires on the 3rd, 6th, 9th... mention; `cooldown` or `once_per_session` limit it further.
A call fires the rule only when such a firing mention is new in that call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.rules.keywords import KeywordHit, KeywordMatcher
from engine.rules.spoken import SpokenText


@dataclass(frozen=True)
class Mention:
    segment: int  # index of the segment the phrase ends in
    at: float | None  # that segment's start
    hit: KeywordHit


@dataclass(frozen=True)
class Tally:
    fired: list[Mention]  # the mentions the count fired on, in order
    run: int  # mentions counted after the last of them


def mentions(
    matcher: KeywordMatcher,
    spoken: SpokenText,
    tick: Callable[[], None] = lambda: None,
) -> list[Mention]:
    """Every mention in `spoken` (built from the whole session), in order."""
    found = []
    for end, hit in matcher.all_hits(spoken, tick):
        segment = spoken.word_segment[end - 1]
        found.append(Mention(segment, _start(spoken.segments[segment]), hit))
    return found


def _start(segment: Mapping[str, Any]) -> float | None:
    start = segment.get("start")
    if isinstance(start, bool) or not isinstance(start, int | float):
        return None
    return float(start)


@dataclass(frozen=True)
class KeywordCount:
    at_least: int
    within: float | None = None
    within_text: str = ""  # `within` as the rule wrote it, for reasons

    def tally(self, found: Sequence[Mention]) -> Tally:
        run: list[float | None] = []
        fired = []
        for mention in found:
            if self.within is not None and mention.at is not None:
                oldest = mention.at - self.within
                run = [at for at in run if at is None or at >= oldest]
            run.append(mention.at)
            if len(run) >= self.at_least:
                fired.append(mention)
                run = []
        return Tally(fired, len(run))

    def shortfall(self, phrases: Sequence[str], tally: Tally) -> str:
        """Why the count did not fire: 'keywords: "basically" said 2 times within 10m,
        needs 3'."""
        said = " or ".join(f'"{phrase}"' for phrase in phrases)
        times = "1 time" if tally.run == 1 else f"{tally.run} times"
        where = f"within {self.within_text}" if self.within is not None else "in this session"
        since = " since the count last fired" if tally.fired else ""
        return f"keywords: {said} said {times} {where}{since}, needs {self.at_least}"
