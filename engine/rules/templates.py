"""Jinja2 in a sandbox: compiled once when rules load, rendered cheaply per event.

`ImmutableSandboxedEnvironment` refuses attribute escapes and mutation; `StrictUndefined`
makes a missing variable an error instead of an empty string; output is cut off at
`MAX_OUTPUT` characters with an error, and every step that could build a bigger value is
refused before it runs; a render has a deadline (`render_budget_ms`). Any failure of a
render (recursion too deep included) is a TemplateError for that field only. HTML fields
use a second, autoescaping environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import update_wrapper
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from markupsafe import Markup

from engine.errors import OmiRulesError, TemplateError
from engine.rules import filters, template_bounds
from engine.rules.template_bounds import MAX_OUTPUT, MAX_POWER_BITS, Clock
from engine.triggers import default_triggers

__all__ = [
    "MAX_OUTPUT",
    "MAX_POWER_BITS",
    "Templates",
    "TemplateSyntax",
    "setting_names",
    "template_strings",
]

# Names a template may use; the trigger alias is checked against the rule's trigger.
COMMON_NAMES = frozenset({"event", "uid", "rule", "now", "secrets", "user"})
# `item` exists only under for_each, `match` only when the rule has a keywords condition


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with each `for` loop's items and each `~` checked (loops
    tick the render deadline; a concatenation too long is refused before it is built)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not getattr(node, "bounded", False):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None
            )
            node.bounded = True  # type: ignore[attr-defined]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # as Jinja's, with the parts passed through environment.concat_parts first
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.concat_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Refuses, before it runs, any step whose result would be too big to build (`*`, `**`,
    `+`, `%`, `~`, str methods like `center`, `str.format` widths, filters like `join`
    and `indent`), so the output bound holds before memory runs out; loops, calls and
    outputs check the render's deadline (engine.rules.template_bounds)."""

    code_generator_class = BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=template_bounds.finalize, **options)
        self.bounded_iter = template_bounds.bounded_iter
        self.concat_parts = template_bounds.concat_parts
        self.globals.pop("lipsum", None)  # lipsum(n) writes n paragraphs: nobody needs it
        for name in template_bounds.FILTER_SIZES:
            if name in self.filters:
                self.filters[name] = template_bounds.bounded_filter(name, self.filters[name])

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        template_bounds.tick()
        template_bounds.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        template_bounds.tick()  # every call: macros, methods, functions
        args = template_bounds.check_str_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """As Jinja's, with each field's width and the result's length checked."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self: str = value.__self__
        is_format_map = value.__name__ == "format_map"
        formatter = (
            _BoundedEscapeFormatter(self, escape=f_self.escape)
            if isinstance(f_self, Markup)
            else _BoundedFormatter(self)
        )

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    return wrapped(*args, **kwargs)  # let Jinja's wrapper raise its TypeError
                kwargs, args = args[0], ()
            formatter.total = 0
            return type(f_self)(formatter.vformat(f_self, args, kwargs))

        return update_wrapper(bounded, value)


class _BoundedFormatterMixin:
    total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        template_bounds.check_format_spec(format_spec)
        result = super().format_field(value, format_spec)  # type: ignore[misc]
        self.total += len(result)
        template_bounds.refuse_over(self.total, "formatted text")
        return result


class _BoundedFormatter(_BoundedFormatterMixin, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_BoundedFormatterMixin, SandboxedEscapeFormatter):
    pass


def _make_env(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined, autoescape=autoescape, keep_trailing_newline=False
    )
    env.filters.update(
        {
            name: template_bounds.bounded_filter(name, f)
            if name in template_bounds.FILTER_SIZES
            else f
            for name, f in filters.FILTERS.items()
        }
    )
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

    def __init__(
        self,
        *,
        render_budget_ms: float | None = template_bounds.DEFAULT_RENDER_BUDGET_MS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.render_budget_ms = render_budget_ms  # None: no deadline
        self.clock = clock
        self._envs = {False: _make_env(False), True: _make_env(True)}
        self._cache: dict[tuple[str, bool], jinja2.Template] = {}
        # a template checked once is not parsed again (10,000 rules repeat a few texts)
        self._checked: dict[tuple[str, str, frozenset[str]], set[str] | TemplateSyntax] = {}

    def check(self, source: str, *, trigger: str, allowed_extra: Iterable[str] = ()) -> set[str]:
        """Compile `source` and return the secret names it uses; raise TemplateSyntax."""
        key = (source, trigger, frozenset(allowed_extra))
        found = self._checked.get(key)
        if found is None:
            try:
                found = self._check(source, trigger, key[2])
            except TemplateSyntax as exc:
                found = exc
            self._checked[key] = found
        if isinstance(found, TemplateSyntax):
            raise TemplateSyntax(found.message, found.line)
        return set(found)

    def _check(self, source: str, trigger: str, allowed_extra: frozenset[str]) -> set[str]:
        env = self._envs[False]
        try:
            tree = env.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateSyntax(f"template syntax: {exc.message}", exc.lineno) from None
        triggers = default_triggers()
        own = triggers[trigger].template_names
        allowed = COMMON_NAMES | own | set(allowed_extra)
        for name in sorted(meta.find_undeclared_variables(tree)):
            if name in allowed:
                continue
            if name in triggers.all_template_names():
                alias = ", ".join(sorted(own))
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
        token = template_bounds.start_deadline(self.render_budget_ms, self.clock)
        try:
            for chunk in template.generate(context):
                template_bounds.tick()
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
        except RecursionError:
            raise TemplateError(
                "recursion too deep (a macro calling itself?)", rule_id=rule_id, field=field
            ) from None
        except MemoryError:
            raise TemplateError("out of memory", rule_id=rule_id, field=field) from None
        except (
            OmiRulesError,
            jinja2.TemplateError,
            TypeError,
            ValueError,
            ArithmeticError,
            LookupError,
            AttributeError,
        ) as exc:
            raise TemplateError(
                f"{type(exc).__name__}: {exc}", rule_id=rule_id, field=field
            ) from None
        finally:
            template_bounds.end_deadline(token)
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


_PARSER = jinja2.Environment()  # parsing only: nothing it parses is rendered


def setting_names(source: str) -> set[str]:
    """The per-user settings a template reads (`user.settings.NAME`, `user.settings['NAME']`);
    a template that does not compile reads none (its error is reported elsewhere)."""
    if "user" not in source:
        return set()
    try:
        tree = _PARSER.parse(source)
    except jinja2.TemplateSyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node  # type: ignore[attr-defined]
        if not (
            isinstance(target, nodes.Getattr)
            and target.attr == "settings"
            and isinstance(target.node, nodes.Name)
            and target.node.name == "user"
        ):
            continue
        if isinstance(node, nodes.Getattr):
            names.add(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str):
                names.add(node.arg.value)
    return names


def _secret_names(tree: nodes.Template) -> set[str]:
    names: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            if _is_secrets(node.node):
                names.add(node.attr)
        elif isinstance(node, nodes.Getitem) and _is_secrets(node.node):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                names.add(node.arg.value)
    return names


def _is_secrets(target: nodes.Node) -> bool:
    return isinstance(target, nodes.Name) and target.name == "secrets"
