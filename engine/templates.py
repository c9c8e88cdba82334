"""Jinja2 in a sandbox: compiled once when rules load, rendered cheaply per event.

`ImmutableSandboxedEnvironment` refuses attribute escapes and mutation; `StrictUndefined`
makes a missing variable an error instead of an empty string; output is cut off at
`MAX_OUTPUT` characters with an error. HTML fields use a second, autoescaping environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from engine import filters
from engine.errors import OmiRulesError, TemplateError

MAX_OUTPUT = 100_000

# Names a template may use; the trigger alias is checked against the rule's trigger.
COMMON_NAMES = frozenset({"event", "uid", "rule", "now", "secrets"})
# `item` exists only under for_each, `match` only when the rule has a keywords condition
TRIGGER_NAMES = {
    "memory": frozenset({"memory"}),
    "transcript": frozenset({"segments", "session"}),
    "audio": frozenset({"audio"}),
    "day_summary": frozenset({"summary"}),
}
ALL_TRIGGER_NAMES = frozenset().union(*TRIGGER_NAMES.values())


MAX_POWER_BITS = 4096  # `**` results past this many bits are refused


def _repeated_size(left: Any, right: Any) -> int:
    """The length `left * right` would have when it repeats a string or a list."""
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            return len(sequence) * times
    return 0


def _power_bits(base: Any, exponent: Any) -> int:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        return exponent * abs(base).bit_length()
    return 0


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Refuses `*` and `**` whose result is too big to build, so the output bound holds
    before memory runs out (`{{ 'x' * 10**12 }}`), not only after."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*" and _repeated_size(left, right) > MAX_OUTPUT:
            raise SecurityError(f"repetition longer than {MAX_OUTPUT} items")
        if operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError(f"power larger than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _make_env(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined, autoescape=autoescape, keep_trailing_newline=False
    )
    env.filters.update(filters.FILTERS)
    return env


class TemplateSyntax(Exception):
    """A template does not compile or names what it may not; `line` is inside the template."""

    def __init__(self, message: str, line: int = 0) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


class Templates:
    """Compiles and caches templates by source text; renders them with bounded output."""

    def __init__(self) -> None:
        self._envs = {False: _make_env(False), True: _make_env(True)}
        self._cache: dict[tuple[str, bool], jinja2.Template] = {}

    def check(self, source: str, *, trigger: str, allowed_extra: Iterable[str] = ()) -> set[str]:
        """Compile `source` and return the secret names it uses; raise TemplateSyntax."""
        env = self._envs[False]
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateSyntax(f"template syntax: {exc.message}", exc.lineno) from None
        allowed = COMMON_NAMES | TRIGGER_NAMES[trigger] | set(allowed_extra)
        for name in sorted(meta.find_undeclared_variables(tree)):
            if name in allowed:
                continue
            if name in ALL_TRIGGER_NAMES:
                alias = ", ".join(sorted(TRIGGER_NAMES[trigger]))
                raise TemplateSyntax(
                    f"template uses '{name}', which a {trigger} rule does not have "
                    f"(it has {alias} and event)"
                )
            if name == "item":
                raise TemplateSyntax("template uses 'item', which only a rule with for_each has")
            if name == "match":
                raise TemplateSyntax(
                    "template uses 'match', which only a rule with a keywords condition has"
                )
            names = ", ".join(sorted(allowed))
            raise TemplateSyntax(f"template uses unknown variable '{name}' (known: {names})")
        return _secret_names(tree)

    def compile(self, source: str, *, autoescape: bool = False) -> jinja2.Template:
        key = (source, autoescape)
        template = self._cache.get(key)
        if template is None:
            template = self._envs[autoescape].from_string(source)
            self._cache[key] = template
        return template

    def render(
        self,
        source: str,
        context: Mapping[str, Any],
        *,
        autoescape: bool = False,
        rule_id: str = "",
        field: str = "",
    ) -> str:
        if not is_template(source):
            return source
        template = self.compile(source, autoescape=autoescape)
        size = 0
        parts: list[str] = []
        try:
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateError(
                        f"output longer than {MAX_OUTPUT} characters", rule_id=rule_id, field=field
                    )
                parts.append(chunk)
        except TemplateError as exc:
            if not exc.rule_id:
                exc = type(exc)(exc.message, rule_id=rule_id, field=field)
            raise exc from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(exc.message or "undefined", rule_id=rule_id, field=field) from None
        except SecurityError as exc:
            raise TemplateError(
                f"refused by sandbox: {exc}", rule_id=rule_id, field=field
            ) from None
        except (OmiRulesError, jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(
                f"{type(exc).__name__}: {exc}", rule_id=rule_id, field=field
            ) from None
        return "".join(parts)

    def render_value(
        self,
        value: Any,
        context: Mapping[str, Any],
        *,
        autoescape: Callable[[str], bool] = lambda name: False,
        rule_id: str = "",
        field: str = "",
    ) -> Any:
        """Render every string inside `value` (nested lists and mappings included)."""
        if isinstance(value, str):
            return self.render(
                value, context, autoescape=autoescape(field), rule_id=rule_id, field=field
            )
        if isinstance(value, list):
            return [
                self.render_value(v, context, autoescape=autoescape, rule_id=rule_id, field=field)
                for v in value
            ]
        if isinstance(value, dict):
            return {
                k: self.render_value(
                    v, context, autoescape=autoescape, rule_id=rule_id, field=f"{field}.{k}"
                )
                for k, v in value.items()
            }
        return value


def template_strings(value: Any) -> Iterable[tuple[str, str]]:
    """(relative field path, text) for every template string inside an option value."""
    if isinstance(value, str):
        yield "", value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for sub, text in template_strings(item):
                yield f"[{index}]{sub}", text
    elif isinstance(value, dict):
        for key, item in value.items():
            for sub, text in template_strings(item):
                yield f".{key}{sub}", text


def _secret_names(tree: nodes.Template) -> set[str]:
    names = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "secrets":
            if isinstance(node, nodes.Getattr):
                names.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                names.add(node.arg.value)
    return names
