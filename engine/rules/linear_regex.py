"""`matches:` regular expressions on RE2, whose time is linear in the text, so a
sender's text can never trigger catastrophic backtracking."""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import re2

LinearRegex: TypeAlias = Any  # re2's compiled pattern (google-re2 ships no type hints)
_RE2_TYPE: type = re2._Regexp
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is reported as a rule error, not on stderr


def compile_regex(pattern: str) -> LinearRegex:
    """`matches:` runs on RE2, whose time is linear in the text (no catastrophic
    backtracking on a sender's text). Syntax errors read as Python's `re` words them;
    a pattern RE2 cannot run (backreferences, lookaround) raises ValueError saying so."""
    re.compile(pattern)  # raises re.error with the familiar message
    try:
        compiled: LinearRegex = re2.compile(pattern, _RE2_OPTIONS)
        return compiled
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"matches: {pattern!r} needs a feature the linear-time regex engine (RE2) does "
            f"not have, such as backreferences or lookaround ({detail})"
        ) from None


def is_linear_regex(value: Any) -> bool:
    return isinstance(value, _RE2_TYPE)


_SET_SIZE = 128  # patterns per RE2 set: its DFA's states hold every pattern's position
_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 64 << 20  # memory changes no answer; a DFA that ran out would miss


class RegexSet:
    """Many `matches:` patterns searched at once (RE2 sets of `_SET_SIZE`), with the
    options `compile_regex` uses; `search(text)` gives the indexes of those found."""

    def __init__(self, patterns: list[str]) -> None:
        self._sets: list[tuple[int, Any]] = []
        for first in range(0, len(patterns), _SET_SIZE):
            searcher = re2.Set.SearchSet(_SET_OPTIONS)
            for pattern in patterns[first : first + _SET_SIZE]:
                searcher.Add(pattern)
            searcher.Compile()
            self._sets.append((first, searcher))

    def search(self, text: str) -> list[int]:
        found: list[int] = []
        for first, searcher in self._sets:
            found.extend(first + index for index in searcher.Match(text) or ())
        return found
