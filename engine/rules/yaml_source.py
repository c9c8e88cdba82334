"""YAML loading that remembers where every key and value came from.

PyYAML's constructors drop node marks; rule errors need them ("rules/x.yaml:9:5"), so the
document is composed into nodes and converted to plain Python here, recording the mark of
each value and each mapping key under its path inside the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]
MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases may repeat a node, but a few hundred bytes of nested aliases ("billion laughs")
# expand to billions of values: the expansion may be at most this many times the nodes
# written, plus a floor for ordinary reuse of anchors.
MAX_EXPANSION_FACTOR = 20
MIN_EXPANSION = 10_000


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a document stands in its file."""

    file: str
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)

    def mark_of(self, path: Path, *, key: bool = False) -> Mark:
        """The mark of `path`, or of its nearest ancestor that has one."""
        if key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self.values:
                return self.values[path]
            path = path[:-1]
        return self.values.get((), Mark(1, 1))


class YamlSyntaxError(Exception):
    def __init__(self, message: str, mark: Mark) -> None:
        self.message = message
        self.mark = mark
        super().__init__(message)


def _mark(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


# libyaml parses about ten times faster; its error texts differ, so a document it refuses
# is parsed again by PyYAML's own parser for the message (the same one either way)
FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_with_marks(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain Python plus a SourceMap of its nodes."""
    if FAST_LOADER is not yaml.SafeLoader:
        try:
            return _load(FAST_LOADER, text, file)
        except YamlSyntaxError:
            pass
    return _load(yaml.SafeLoader, text, file)


def _load(loader_class: type[yaml.SafeLoader], text: str, file: str) -> tuple[Any, SourceMap]:
    loader = loader_class(text)
    source = SourceMap(file)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, source
        budget = [MIN_EXPANSION + MAX_EXPANSION_FACTOR * _distinct_nodes(node)]
        return _convert(loader, node, (), source, {}, budget), source
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else Mark(1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{exc.context}, {problem}"
        raise YamlSyntaxError(f"YAML syntax: {problem}", where) from None
    finally:
        loader.dispose()


def _convert(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: Path,
    source: SourceMap,
    written_by_node: dict[int, set[int]],
    budget: list[int],
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlSyntaxError(
            "YAML aliases expand too far (an alias bomb?): write the values out instead",
            _mark(node),
        )
    source.values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        # keys merged in with `<<: *anchor` may be overridden; keys written here may not.
        # Remembered per node: flattening loses the difference, and an alias visits again.
        written = written_by_node.setdefault(
            id(node), {id(key) for key, _ in node.value if key.tag != MERGE_TAG}
        )
        loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        written_keys: set[Any] = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):  # `on:` is true in YAML 1.1: keep the text as written
                key = str(getattr(key_node, "value", key))
            child = (*path, key)
            if id(key_node) in written:
                if key in written_keys:
                    raise YamlSyntaxError(f"duplicate key '{key}'", _mark(key_node))
                written_keys.add(key)
            source.keys[child] = _mark(key_node)
            result[key] = _convert(loader, value_node, child, source, written_by_node, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(loader, item, (*path, index), source, written_by_node, budget)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def _distinct_nodes(root: yaml.Node) -> int:
    """How many nodes the document holds, each counted once however often aliased."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return len(seen)
