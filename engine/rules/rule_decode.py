"""Turn a rule's raw YAML (with its SourceMap) into Structs, collecting every error.

msgspec stops at the first error of a value; rule authors want all of them. So Structs are
walked field by field: unknown keys get a did-you-mean, required keys are checked, and each
field is converted on its own, recursing into nested Structs and lists of Structs. `do:`
items are typed by the connector registry.

msgspec's errors are read from their text (the regexes below); msgspec is pinned to one
release family and tests/test_rule_decode.py pins every message shape read here.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import UnsetType

from engine.connector import Registry
from engine.errors import RuleError
from engine.rules.rule_model import TriggerName
from engine.rules.yaml_source import Path, SourceMap
from engine.triggers import default_triggers


class Invalid:
    """Marks a value that failed to decode (its error is already recorded)."""


INVALID = Invalid()


@dataclass
class DecodeContext:
    source: SourceMap
    rule_id: str | None
    registry: Registry
    errors: list[RuleError] = field(default_factory=list)
    base: Path = ()  # where the rule being decoded stands in its file ((i,) in a list file)

    def describe(self, path: Path) -> str:
        """`path` as a person reads it, relative to the rule: "do[0].slack.text"."""
        if path[: len(self.base)] == self.base:
            path = path[len(self.base) :]
        return describe_path(path)

    def at(self, path: Path, message: str, *, key: bool = False) -> RuleError:
        """`message` as a RuleError at `path`'s file:line:col in the rule being decoded."""
        mark = self.source.mark_of(path, key=key)
        return RuleError(
            message,
            file=self.source.file,
            line=mark.line,
            column=mark.column,
            rule_id=self.rule_id,
            where=self.describe(path),
        )

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.errors.append(self.at(path, message, key=key))


def describe_path(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "mapping",
        list: "list",
        str: "text",
        bool: "boolean",
        int: "integer",
        float: "number",
    }.get(type(value), type(value).__name__)


_AT = re.compile(r" - at `\$(?P<sub>[^`]*)`$")
_SUB_PART = re.compile(r"\.([A-Za-z_][\w]*)|\[(\d+)\]")
_GOT = re.compile(r", got `[^`]*`$")  # msgspec's own "got"; ours shows the YAML value instead
_TYPE = re.compile(r"`([^`]*)`")
# msgspec's JSON type names in the words of a YAML author
_TYPE_NAMES = {
    "str": "text",
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "array": "list",
    "object": "mapping",
}


def _yaml_words(message: str) -> str:
    """msgspec's "Expected `array | null`, got `str`" as "expected list or null"."""
    message = _GOT.sub("", message)
    message = _TYPE.sub(
        lambda found: " or ".join(
            _TYPE_NAMES.get(name.strip(), name.strip()) for name in found.group(1).split("|")
        ),
        message,
    )
    return message[0].lower() + message[1:]


def _literal_choices(typ: Any) -> list[str]:
    """The allowed words of a Literal field (inside unions and lists too)."""
    if typing.get_origin(typ) is typing.Literal:
        return [str(choice) for choice in typing.get_args(typ)]
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) in (list, typing.Union):
        return [choice for member in typing.get_args(typ) for choice in _literal_choices(member)]
    return []


def _value_at(value: Any, sub: list[str | int]) -> Any:
    for part in sub:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            break
    return value


def _convert_leaf(value: Any, typ: Any, path: Path, ctx: DecodeContext) -> Any:
    try:
        return msgspec.convert(value, typ, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        sub: list[str | int] = []
        found = _AT.search(message)
        if found:
            message = message[: found.start()]
            for name, index in _SUB_PART.findall(found.group("sub")):
                sub.append(int(index) if index else name)
        where = ctx.describe((*path, *sub))
        bad = _value_at(value, sub)
        choices = _literal_choices(typ)
        if message.startswith("Invalid enum value") and choices:
            hint = did_you_mean(str(bad), choices)
            ctx.error(
                (*path, *sub),
                f"{where}: unknown value {bad!r}{hint}; expected one of {', '.join(choices)}",
            )
            return INVALID
        shown = f"{bad!r:.60}"
        ctx.error((*path, *sub), f"{where}: {_yaml_words(message)}, got {_yaml_type(bad)} {shown}")
        return INVALID


def _struct_args(typ: Any) -> tuple[type | None, bool]:
    """For a field type, the Struct it holds (if any) and whether a list of them is allowed
    (`not:` takes one condition or a list)."""
    members = typing.get_args(typ) if isinstance(typ, types.UnionType) else (typ,)
    members = tuple(m for m in members if m not in (UnsetType, type(None)))
    single = None
    for member in members:
        if isinstance(member, type) and issubclass(member, msgspec.Struct):
            single = member
    for member in members:
        if typing.get_origin(member) is list:
            (inner,) = typing.get_args(member)
            if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
                return inner, True
    return single, False


@functools.cache
def struct_fields(typ: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """A Struct's fields by their YAML names (msgspec reads the annotations each call: a
    quarter of loading 10,000 rules, before this was kept)."""
    return {f.encode_name: f for f in msgspec.structs.fields(typ)}


def decode_struct(raw: Any, typ: type[msgspec.Struct], path: Path, ctx: DecodeContext) -> Any:
    """Decode a mapping into `typ`, recording every error; INVALID if any was found."""
    if not isinstance(raw, dict):
        where = ctx.describe(path) or "rule"
        ctx.error(path, f"{where}: expected a mapping, got {_yaml_type(raw)}")
        return INVALID
    fields = struct_fields(typ)
    before = len(ctx.errors)
    misspelt: set[str] = set()  # known keys an unknown key probably meant
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if key in ("on", "true", "True") and "trigger" in fields:
                close = ["trigger"]
                hint = " (a bare `on:` is read as true by YAML; write `trigger:`)"
            misspelt.update(close)
            ctx.error((*path, key), f"unknown key '{key}'{hint}", key=True)
    values: dict[str, Any] = {}
    for name, info in fields.items():
        if name not in raw:
            if info.required and name not in misspelt:  # one mistake, one error
                where = ctx.describe(path) or "rule"
                ctx.error(path, f"{where}: missing required key '{name}'")
            continue
        value = decode_field(raw[name], info.type, (*path, name), ctx)
        if value is not INVALID:
            values[info.name] = value
    if len(ctx.errors) > before:
        return INVALID
    return typ(**values)


def decode_trigger(raw: Any, path: Path, ctx: DecodeContext) -> Any:
    """A trigger's name, one of the registered triggers (engine.triggers)."""
    name = _convert_leaf(raw, str, path, ctx)
    known = default_triggers()
    if name is INVALID or name in known:
        return name
    hint = did_you_mean(name, known)
    ctx.error(
        path,
        f"{ctx.describe(path)}: unknown value {name!r}{hint}; expected one of {', '.join(known)}",
    )
    return INVALID


def decode_field(raw: Any, typ: Any, path: Path, ctx: DecodeContext) -> Any:
    if typ == TriggerName:
        return decode_trigger(raw, path, ctx)
    struct, is_list = _struct_args(typ)
    if struct is None:
        return _convert_leaf(raw, typ, path, ctx)
    if isinstance(raw, list):
        if not is_list:
            ctx.error(path, f"{ctx.describe(path)}: expected a mapping, got list")
            return INVALID
        items = [decode_struct(item, struct, (*path, i), ctx) for i, item in enumerate(raw)]
        return INVALID if any(item is INVALID for item in items) else items
    if isinstance(raw, dict):
        if not is_list or _allows_single(typ, struct):
            return decode_struct(raw, struct, path, ctx)
        ctx.error(path, f"{ctx.describe(path)}: expected a list, got mapping")
        return INVALID
    return _convert_leaf(raw, typ, path, ctx)


def _allows_single(typ: Any, struct: type) -> bool:
    """Whether the field takes one Struct as well as a list (`not:`), not a list only."""
    members = typing.get_args(typ) if isinstance(typ, types.UnionType) else (typ,)
    return struct in members


def decode_actions(raw: list[dict[str, Any]], path: Path, ctx: DecodeContext) -> list[Any]:
    """Decode `do:` items into (connector name, Options) pairs."""
    actions: list[Any] = []
    for index, item in enumerate(raw):
        where = (*path, index)
        if not isinstance(item, dict) or len(item) != 1:
            names = ", ".join(ctx.registry)
            got = (
                f"keys {', '.join(map(str, item))}" if isinstance(item, dict) else _yaml_type(item)
            )
            ctx.error(
                where,
                f"{ctx.describe(where)}: each action is a mapping with one connector name "
                f"({names}), got {got}",
            )
            actions.append(INVALID)
            continue
        ((name, options),) = item.items()
        if name not in ctx.registry:
            hint = did_you_mean(name, ctx.registry)
            known = ", ".join(ctx.registry)
            ctx.error((*where, name), f"unknown connector '{name}'{hint}; known: {known}", key=True)
            actions.append(INVALID)
            continue
        connector = ctx.registry[name]
        decoded = decode_struct(options or {}, connector.Options, (*where, name), ctx)
        actions.append(INVALID if decoded is INVALID else (name, decoded))
    return actions
