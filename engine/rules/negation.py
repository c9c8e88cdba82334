"""Negated keyword phrases: "don't turn on the lights" does not say "turn on the lights".

A phrase heard at word `k` of a segment is negated when, in the same segment and the same
clause, a negation cue ends right before it, or before at most `MAX_FILLERS` filler words:

- cues (as normalized words): `dont`, `do nt` ("do n't"), `not` ("do not", "please do
  not"), `never`, `no need` ("no need to", "there's no need for you to"), `doesnt`,
  `didnt`, `shouldnt`, `mustnt`;
- fillers: the few words that sit between a cue and the verb it negates ("don't you dare",
  "don't want you to", "no need to", "never ever", "do not just");
- a clause ends at `. , ; : ! ? … — –` or a spaced hyphen (not at a decimal point "3.5"
  or a thousands comma "1,000"), and at a segment's end: "I don't know, turn on the
  lights" says the phrase, and so does "never mind turn on the lights" ("mind" is no
  filler);
- "why don't you …", "why don't we …" and "why not …" are suggestions, not negations.

Left out on purpose, because in speech they as often precede a command as negate it:
"no" ("no, turn on the lights"), "stop", "cancel", "can't" ("can't you turn on the
lights?"), "won't" ("won't you …"), and "forget" ("don't forget to turn on the lights" is a
command). The check is conservative: it only looks back a few words, so "I don't think you
should turn on the lights" still fires.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

CUES: tuple[tuple[str, ...], ...] = (
    ("dont",),
    ("nt",),
    ("not",),
    ("never",),
    ("no", "need"),
    ("doesnt",),
    ("didnt",),
    ("shouldnt",),
    ("mustnt",),
)
SUGGESTION_CUES = frozenset({("dont",), ("nt",), ("not",)})  # after "why": a suggestion
FILLERS = frozenset(
    {
        "you",
        "we",
        "dare",
        "ever",
        "even",
        "just",
        "please",
        "really",
        "actually",
        "want",
        "need",
        "have",
        "to",
        "for",
        "go",
        "and",
        "try",
        "bother",
        "again",
    }
)
MAX_FILLERS = 4
_LAST_CUE_WORDS = frozenset(cue[-1] for cue in CUES)
MAY_NEGATE = FILLERS | _LAST_CUE_WORDS  # a phrase after any other word is not negated
CLAUSE_BREAK = re.compile(r"[;:!?…—–]|[.,](?!\w)|\s-\s")

SameClause = Callable[[int, int], bool]  # whether two words of the segment share a clause


def negation_before(
    words: Sequence[str], at: int, same_clause: SameClause, first: int = 0
) -> tuple[str, ...] | None:
    """The cue negating the phrase that starts at `words[at]`, or None.

    `words[first:]` are one segment's normalized words (or their first part); `same_clause`
    is asked only when a cue is in reach, so a hit that is not negated costs a few lookups."""
    for end in range(at - 1, max(first - 1, at - 2 - MAX_FILLERS), -1):
        if words[end] in _LAST_CUE_WORDS:
            cue = _cue_ending_at(words, end, first)
            if cue is not None:
                start = end - len(cue) + 1
                if start > first and words[start - 1] == "why" and cue in SUGGESTION_CUES:
                    return None
                return cue if same_clause(start, at) else None
        if words[end] not in FILLERS:
            return None
    return None


def _cue_ending_at(words: Sequence[str], end: int, first: int) -> tuple[str, ...] | None:
    for cue in CUES:
        start = end - len(cue) + 1
        if start >= first and tuple(words[start : end + 1]) == cue:
            return cue
    return None
