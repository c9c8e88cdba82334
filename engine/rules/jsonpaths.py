"""JSONPath expressions (jsonpath-ng extended syntax), parsed once and shared by text.

Most paths rules use are plain steps (`$.structured.category`, `$.segments[0].text`): those
are read directly from the document, with jsonpath-ng's own rules for a missing key, a
non-mapping or an index out of range, and only the rest (wildcards, filters, slices,
descendants) are walked by jsonpath-ng.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng import jsonpath as jsonpath_nodes
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


# a plain step: (True, key) reads a mapping's key, (False, index) a list's item
Step = tuple[bool, Any]
_MISSING = object()


def _plain_steps(path: JSONPath) -> tuple[Step, ...] | None:
    """The steps of a path made only of `$`, single fields and single indexes, else None."""
    steps: list[Step] = []
    node = path
    while type(node) is jsonpath_nodes.Child:
        right = node.right
        if type(right) is jsonpath_nodes.Fields and len(right.fields) == 1:
            if right._deprecated_wildcard_use:
                return None
            steps.append((True, right.fields[0]))
        elif type(right) is jsonpath_nodes.Index and len(right.indices) == 1:
            steps.append((False, right.indices[0]))
        else:
            return None
        node = node.left
    if type(node) is not jsonpath_nodes.Root:
        return None
    return tuple(reversed(steps))


@lru_cache(maxsize=65536)
def plain_steps(expression: str) -> tuple[Step, ...] | None:
    """`expression` as plain steps when it is one (see `_plain_steps`); it must parse."""
    return _plain_steps(compile_jsonpath(expression))


def _read(steps: tuple[Step, ...], document: Any) -> list[Any]:
    """What jsonpath-ng's Fields and Index select, step by step, without building contexts."""
    value = document
    for is_key, key in steps:
        if is_key:
            try:
                value = value.get(key, _MISSING)
            except (TypeError, AttributeError):
                return []
            if value is _MISSING:
                return []
        elif isinstance(value, list | tuple) and -len(value) <= key < len(value):
            value = value[key]
        else:
            return []
    return [value]


def select(expression: str, document: Any) -> list[Any]:
    """Every value `expression` selects in `document` (an empty list when none)."""
    steps = plain_steps(expression)
    if steps is not None and jsonpath_nodes.auto_id_field is None:
        return _read(steps, document)
    return select_walked(expression, document)


def select_walked(expression: str, document: Any) -> list[Any]:
    """`select` by jsonpath-ng's own walk, whatever the path (the reference for `select`)."""
    return [match.value for match in compile_jsonpath(expression).find(document)]
