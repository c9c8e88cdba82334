"""Template conditions that are a field compared with a text: `{{ memory.structured.title
== 'Plan' }}` holds only when that field of the payload is that text, so the rule index can
look it up like `path: $.structured.title, equals: Plan`.

Why that is safe: the template renders "True" only when the value `==` the text. A dotted
name reaches a payload value by key (a JSON value's own attributes are methods or numbers,
never text, and `_` names are refused by the sandbox), so a text can only come from the
keys the path names; a missing key is an error (StrictUndefined), which fails too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes

from engine.rules.jsonpaths import JsonPathSyntax, plain_steps

_PARSER = jinja2.Environment()  # the default syntax, as engine.rules.templates uses


class _Probe:
    """A stand-in event view: which template names are the payload itself."""

    doc: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def payload_names(aliases: Callable[[Any], Mapping[str, Any]]) -> frozenset[str]:
    """`event` and the trigger's aliases that are the whole payload (`memory`, `audio`)."""
    probe = _Probe()
    try:
        names = {name for name, value in aliases(probe).items() if value is probe.doc}
    except Exception:  # an alias needing more of a view than the payload: not the payload
        names = set()
    return frozenset({"event", *names})


def _keys(node: nodes.Node, names: frozenset[str]) -> list[str] | None:
    """The keys a chain of `.name` / `['name']` walks from a payload name, or None."""
    keys: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
            node = node.node
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            keys.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name) and node.name in names and node.ctx == "load":
            return list(reversed(keys))
        else:
            return None


def _comparison(template: nodes.Template) -> nodes.Compare | None:
    """The one `{{ a == b }}` a template is (whitespace around it allowed), or None."""
    if len(template.body) != 1 or not isinstance(template.body[0], nodes.Output):
        return None
    found = [n for n in template.body[0].nodes if not _blank(n)]
    if len(found) != 1 or not isinstance(found[0], nodes.Compare):
        return None
    compare = found[0]
    if len(compare.ops) != 1 or compare.ops[0].op != "eq":
        return None
    return compare


def _blank(node: nodes.Node) -> bool:
    return isinstance(node, nodes.TemplateData) and not node.data.strip()


@lru_cache(maxsize=65536)
def template_equality(source: str, names: frozenset[str]) -> tuple[str, str] | None:
    """(JSONPath, text) when `source` holds only if the payload has that text there."""
    try:
        compare = _comparison(_PARSER.parse(source))
    except jinja2.TemplateSyntaxError:
        return None
    if compare is None:
        return None
    for side, other in ((compare.expr, compare.ops[0].expr), (compare.ops[0].expr, compare.expr)):
        keys = _keys(side, names)
        if keys and isinstance(other, nodes.Const) and isinstance(other.value, str):
            if not all(key.isidentifier() for key in keys):
                return None
            expression = "$." + ".".join(keys)
            try:
                steps = plain_steps(expression)
            except JsonPathSyntax:  # a key jsonpath-ng reserves (`where`)
                return None
            if steps != tuple((True, key) for key in keys):
                return None
            return expression, other.value
    return None
