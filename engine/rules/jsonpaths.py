"""JSONPath expressions (jsonpath-ng extended syntax), parsed once and shared by text."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext.parser import parse as parse_extended


class JsonPathSyntax(ValueError):
    """A JSONPath expression does not parse."""


@lru_cache(maxsize=65536)
def compile_jsonpath(expression: str) -> JSONPath:
    """Parse `expression` once; every rule using the same text shares the result."""
    if not expression.strip():
        raise JsonPathSyntax("empty JSONPath")
    try:
        compiled: JSONPath = parse_extended(expression)
        return compiled
    except Exception as exc:  # ply raises bare Exception for parse errors
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise JsonPathSyntax(f"JSONPath {expression!r} does not parse: {message}") from None


def select(expression: str, document: Any) -> list[Any]:
    """Every value `expression` selects in `document` (an empty list when none)."""
    return [match.value for match in compile_jsonpath(expression).find(document)]
