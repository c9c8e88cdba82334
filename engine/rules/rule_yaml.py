"""Minimal edits of rule YAML text: ruamel.yaml round-trips that keep what the user wrote.

Every edit loads the text with ruamel.yaml (comments, key order and quoting kept), changes
the data, and dumps it again. ruamel.yaml still normalises a few things it does not track
(indentation of the whole document, spacing inside flow collections, very long lines), so
the dump is also compared with a dump of the *unchanged* data: lines the edit did not touch
are taken from the original text, byte for byte (`patch_lines`).

A list file is edited one item at a time: `list_items` finds each item's span in the text,
`item_text` gives it as a one-rule document and `splice` puts an edited item back, leaving
every byte outside the span alone.
"""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tag import Tag
from ruamel.yaml.util import load_yaml_guess_indent

from engine.rules.yaml_source import YamlSyntaxError, load_with_marks

_PYYAML_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


# written plain only when both YAML 1.1 (the engine) and 1.2 (ruamel.yaml) surely read it back
# the same, in block and flow context alike; anything else a new value holds is quoted
_SAFE_PLAIN = re.compile(r"^[A-Za-z0-9_$/][A-Za-z0-9_$./@-]*( [A-Za-z0-9_$./@-]+)*$")


def _plain_scalar_is_text(value: str) -> bool:
    """Whether the engine (PyYAML, YAML 1.1) reads `value` written plain as a string."""
    tag = _PYYAML_RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == _STR_TAG)


class EditError(Exception):
    """The text cannot be edited: not YAML ruamel.yaml reads, or not one rule (a mapping)."""


class _EngineResolver(VersionedResolver):
    """Plain scalars typed by PyYAML's rules, the engine's: ruamel.yaml's own YAML 1.1 rules
    differ (`N` a boolean, `1E5` a float), and a value ruamel.yaml reads differently could
    not be told apart from the one the builder sets."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode:
            tag = _PYYAML_RESOLVER.resolve(yaml.ScalarNode, value, implicit)  # type: ignore[no-untyped-call]
            return Tag(suffix=tag)
        return super().resolve(kind, value, implicit)


def _round_trip(text: str) -> tuple[Any, YAML]:
    rt = YAML(typ="rt")
    rt.Resolver = _EngineResolver
    rt.preserve_quotes = True
    rt.width = 4096  # never fold a long line the user wrote on one
    # read scalars as the engine (PyYAML) does: `yes`, `on` are booleans, `08` a string. The
    # dump then starts with a `%YAML 1.1` directive, which patch_lines leaves out again.
    rt.version = (1, 1)
    try:
        data, indent, block_seq_indent = load_yaml_guess_indent(text, yaml=rt)
    except YAMLError as exc:
        raise EditError(f"YAML syntax: {exc}") from None
    if block_seq_indent is None:
        rt.indent(mapping=indent or 2, sequence=4, offset=2)
    else:  # `indent` is where a list item's content starts, past its `- `
        rt.indent(mapping=2, sequence=max(indent or 2, 2), offset=block_seq_indent)
    return data, rt


def _dump(data: Any, rt: YAML) -> str:
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def edit_rule_text(
    text: str, change: Callable[[CommentedMap], None], *, keep_comments: bool = False
) -> str:
    """`text` (one rule, a mapping) after `change` edited its data in place, all else kept.
    `keep_comments`: see patch_lines."""
    data, rt = _round_trip(text)
    if not isinstance(data, CommentedMap):
        raise EditError("the text is not one rule (a YAML mapping)")
    baseline = _dump(data, rt)
    change(data)
    return patch_lines(text, baseline, _dump(data, rt), keep_comments=keep_comments)


def patch_lines(original: str, baseline: str, modified: str, *, keep_comments: bool = False) -> str:
    """`modified`, with the lines it shares with `baseline` taken from `original`.

    `baseline` is ruamel.yaml's dump of `original` unchanged, `modified` its dump after the
    edit: lines of `original` in regions the edit did not touch come back as written.
    `keep_comments`: comment lines just above a line the edit kept stay, although the edit
    removed what stood above them (ruamel.yaml files the comment above a key under the key
    before it, so deleting that key would take the next key's comment along).
    """
    if modified == baseline:
        return original
    if baseline == original:
        return modified
    base = baseline.splitlines(keepends=True)
    mod = modified.splitlines(keepends=True)
    orig = original.splitlines(keepends=True)
    changed = [False] * len(base)
    replaced: list[list[str]] = [[line] for line in base]
    inserted: dict[int, list[str]] = defaultdict(list)
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, base, mod, autojunk=False).get_opcodes():
        if tag == "insert":
            inserted[i1] += mod[j1:j2]
        elif tag != "equal":
            added, end = mod[j1:j2], i2
            if keep_comments and i2 < len(base):
                while end > i1 and base[end - 1].lstrip().startswith("#"):
                    end -= 1
                kept = base[end:i2]
                if kept and added[len(added) - len(kept) :] == kept:
                    added = added[: len(added) - len(kept)]
            for i in range(i1, end):
                changed[i] = True
                replaced[i] = []
            if end > i1:
                replaced[i1] = added
            else:
                inserted[i1] += added
    out: list[str] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, base, orig, autojunk=False).get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            # respelled line for line (spacing, flow style): each line on its own
            for k in range(i2 - i1):
                out += inserted.pop(i1 + k, [])
                out += replaced[i1 + k] if changed[i1 + k] else [orig[j1 + k]]
        elif i1 == i2 or not (any(changed[i1:i2]) or any(i in inserted for i in range(i1 + 1, i2))):
            out += inserted.pop(i1, []) if i1 < i2 else []
            out += orig[j1:j2]  # written differently from ruamel's dump, and not edited
        else:
            for i in range(i1, i2):
                out += inserted.pop(i, [])
                out += replaced[i]
    for i in sorted(inserted):
        out += inserted[i]
    return "".join(out)


# ---- the builder's model onto the text


def merge_model(text: str, model: dict[str, Any]) -> str:
    """The builder's plain-JSON model of one rule applied onto its YAML `text`, minimally.

    Mappings are merged key by key and lists item by item; a value equal to the one in the
    text (as the engine reads it) is left alone, its comments and quoting kept; a changed
    string keeps the quoting style it had; removed keys go and new keys are appended.
    """
    if not isinstance(model, dict):
        raise EditError("the model of a rule is a mapping")
    if not text.strip():
        text = "{}\n"
    try:
        # what the engine reads: the values the model is compared with
        reference, _ = load_with_marks(text, "rule.yaml")
    except YamlSyntaxError as exc:
        raise EditError(exc.message) from None
    return edit_rule_text(
        text, lambda data: _merge_mapping(data, reference, model), keep_comments=True
    )


def _same(reference: Any, new: Any) -> bool:
    def dump(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return dump(reference) == dump(new)


def _merge_mapping(old: CommentedMap, reference: Any, new: dict[str, Any]) -> None:
    if isinstance(reference, dict) and len(reference) == len(old):
        names = {key: str(name) for key, name in zip(old, reference, strict=True)}
    else:  # `<<:` merge keys: ruamel.yaml and PyYAML count the keys differently
        names = {key: str(key) for key in old}
    reference = reference if isinstance(reference, dict) else {}
    for key in [key for key in old if names[key] not in new]:
        del old[key]
    keys = {names[key]: key for key in old}
    for name, value in new.items():
        if name in keys:
            key = keys[name]
            old[key] = _merged(old[key], reference.get(name), value)
        else:
            old[name] = _fresh(value)


def _merged(old: Any, reference: Any, new: Any) -> Any:
    if _same(reference, new):
        return old
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        _merge_mapping(old, reference, new)
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        items = reference if isinstance(reference, list) else []
        for index, value in enumerate(new[: len(old)]):
            at = items[index] if index < len(items) else None
            old[index] = _merged(old[index], at, value)
        del old[len(new) :]
        for value in new[len(old) :]:
            old.append(_fresh(value))
        return old
    if isinstance(old, str) and type(old) is not str and isinstance(new, str):
        return type(old)(new)  # keeps "double", 'single', | literal or > folded style
    return _fresh(new)


def _fresh(value: Any) -> Any:
    """A new value from the model as ruamel.yaml data; a string the engine (YAML 1.1) would
    read as something else when written plain (`yes`, `on`, `0777`) is quoted."""
    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _fresh(item)
        return mapping
    if isinstance(value, list):
        return CommentedSeq(_fresh(item) for item in value)
    if isinstance(value, str) and type(value) is str:
        if not (_SAFE_PLAIN.match(value) and _plain_scalar_is_text(value)):
            return DoubleQuotedScalarString(value)
    return value


# ---- the items of a list file


@dataclass(frozen=True)
class ItemSpan:
    """Where one item of a list file stands: text[start:end] is the item's own text from
    its first key (after `- `) to its last line; later lines are indented by `indent`.
    `line_start` is where the line of its `-` begins."""

    start: int
    end: int
    indent: int
    line_start: int


def list_items(text: str) -> list[ItemSpan] | None:
    """The items of a file whose document is a block list, or None for any other file."""
    try:
        tokens = list(yaml.scan(text))
    except yaml.YAMLError:
        return None
    depth = 0
    entries: list[int] = []  # token index of each top-level `-`
    root_is_list = False
    for index, token in enumerate(tokens):
        if isinstance(token, yaml.BlockSequenceStartToken) and depth == 0:
            root_is_list = True
        if isinstance(
            token,
            (
                yaml.BlockSequenceStartToken,
                yaml.BlockMappingStartToken,
                yaml.FlowSequenceStartToken,
                yaml.FlowMappingStartToken,
            ),
        ):
            depth += 1
        elif isinstance(
            token, (yaml.BlockEndToken, yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)
        ):
            depth -= 1
        elif isinstance(token, yaml.BlockEntryToken) and depth == 1 and root_is_list:
            entries.append(index)
    if not root_is_list:
        return None
    spans = []
    for number, index in enumerate(entries):
        dash, following = tokens[index], tokens[index + 1]
        if isinstance(following, (yaml.BlockEntryToken, yaml.BlockEndToken)):
            start, indent = dash.end_mark.index, dash.start_mark.column + 2
        else:
            start, indent = following.start_mark.index, following.start_mark.column
        if number + 1 < len(entries):
            next_dash = tokens[entries[number + 1]].start_mark
            limit = next_dash.index - next_dash.column
        else:
            limit = len(text)
        end = _trim_end(text, start, limit, indent)
        spans.append(ItemSpan(start, end, indent, dash.start_mark.index - dash.start_mark.column))
    return spans


def _trim_end(text: str, start: int, limit: int, indent: int) -> int:
    """`limit` moved back over the blank lines and the comments less indented than the
    item that follow it: they stand between items and belong to neither."""
    lines = text[start:limit].splitlines(keepends=True)
    end = limit
    while len(lines) > 1:
        last = lines[-1]
        stripped = last.lstrip(" ")
        if stripped.strip() and not (
            stripped.startswith("#") and len(last) - len(stripped) < indent
        ):
            break
        end -= len(last)
        lines.pop()
    return end


def item_text(text: str, span: ItemSpan) -> str:
    """The item as a one-rule document: its lines de-indented by the item's indentation."""
    lines = text[span.start : span.end].splitlines(keepends=True)
    out = lines[:1]
    for line in lines[1:]:
        spaces = len(line) - len(line.lstrip(" "))
        out.append(line[min(spaces, span.indent) :])
    return "".join(out)


def _indented(text: str, indent: int) -> str:
    lines = text.splitlines(keepends=True)
    pad = " " * indent
    return "".join(lines[:1] + [pad + line if line.strip() else line for line in lines[1:]])


def splice(text: str, span: ItemSpan, new_item: str) -> str:
    """`text` with the item at `span` replaced by `new_item` (a one-rule document)."""
    old = text[span.start : span.end]
    new_item = new_item.rstrip("\n") + ("\n" if old.endswith("\n") else "")
    block = patch_lines(
        old, _indented(item_text(text, span), span.indent), _indented(new_item, span.indent)
    )
    return text[: span.start] + block + text[span.end :]


def remove_item(text: str, span: ItemSpan) -> str:
    """`text` without the item at `span` (from the start of its `- ` line)."""
    return text[: span.line_start] + text[span.end :]
