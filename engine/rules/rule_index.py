"""Which rules of a trigger an event may fire, found without visiting them one by one.

Every item of a rule's `when:` must hold (and so must every item of an `all:` inside it),
so one such item that cannot hold rules the rule out. The index keeps, for each rule, one
required item it can look up for a whole rule set at once:

- `path:` with `equals` or `in` of plain values: a table per JSONPath from value to rules,
  looked up with each value the path selects (keys follow predicates._same: true is not 1);
- `keywords:`: every phrase of every rule in one engine.rules.keyword_index.PhraseIndex per
  speaker filter; not a condition with a slot phrase ("remind me to {task}"): its hit may be
  completed by a pause in new speech after words all heard before, or by a closing
  evaluation with no new speech at all (engine.rules.slots), so it is never looked up by
  words (a rule with no other key is a candidate for every event of its trigger);
- `path:` with `matches`: every pattern on the path in one RE2 set, searched once per value;
- `template:` that only compares a payload field with a text (engine.rules.template_keys):
  looked up like `equals`.

A rule with none of these (templates, times, `any:`/`not:` groups, other operators) is a
candidate for every event. Candidates are then decided in full, exactly as without the
index; the index only ever leaves out rules that could not fire, and the matcher explains
those when asked (engine.runtime.matcher.Decisions).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.rules.budget import BudgetExceeded
from engine.rules.keyword_index import PhraseIndex
from engine.rules.linear_regex import RegexSet, is_linear_regex
from engine.rules.predicates import (
    AllOf,
    EventView,
    KeywordTest,
    PathTest,
    Predicate,
    TemplateTest,
)
from engine.rules.template_keys import payload_names, template_equality
from engine.triggers import default_triggers

if TYPE_CHECKING:
    from engine.rules.compiled import CompiledRule

log = logging.getLogger("omi_rules.rule_index")


def value_key(value: Any) -> Hashable | None:
    """The table key of a value: values predicates._same calls equal share a key (1 and 1.0
    do, true and 1 do not); None for a value no key can stand for (a list, a mapping)."""
    key = (isinstance(value, bool), value)
    try:
        hash(key)
    except TypeError:
        return None
    return key


@dataclass
class _ValueKey:  # `path:` with equals / in: the rule needs one of `keys` selected
    path: str
    keys: list[Hashable]


@dataclass
class _PatternKey:  # `path:` with matches: the rule needs `pattern` to find a selected text
    path: str
    pattern: str


@dataclass
class _PhraseKey:  # `keywords:` the rule needs one of its phrases heard
    test: KeywordTest


Key = _ValueKey | _PatternKey | _PhraseKey


def _path_key(test: PathTest) -> Key | None:
    for name, operand in test.operators:
        if name == "equals":
            key = value_key(operand)
            if key is not None:
                return _ValueKey(test.expression, [key])
        elif name == "in" and isinstance(operand, list | tuple):
            keys = [value_key(choice) for choice in operand]
            if all(key is not None for key in keys):
                return _ValueKey(test.expression, [key for key in keys if key is not None])
    for name, operand in test.operators:
        if name == "matches" and is_linear_regex(operand):
            return _PatternKey(test.expression, operand.pattern)
    return None


def _required(predicate: Predicate) -> Iterable[Predicate]:
    """The items that must all hold for `predicate` to hold (`all:` groups opened)."""
    if type(predicate) is AllOf:
        for _label, item in predicate.items:
            yield from _required(item)
    else:
        yield predicate


def _rank(key: Key) -> int:
    """Prefer the key that rules out most for least: a value, a phrase, a pattern, fuzzy."""
    if isinstance(key, _ValueKey):
        return 0
    if isinstance(key, _PhraseKey):
        return 3 if key.test.matcher.fuzzy else 1
    return 2


def _template_key(test: TemplateTest, names: frozenset[str]) -> Key | None:
    found = template_equality(test.source, names)
    if found is None:
        return None
    path, text = found
    return _ValueKey(path, [value_key(text)])


def index_key(predicate: Predicate, names: frozenset[str] = frozenset()) -> Key | None:
    """The item of `predicate` the index looks the rule up by, or None (always a candidate);
    `names` are the template names that stand for the payload."""
    if type(predicate) is not AllOf:
        return None  # an unknown kind of predicate: decided rule by rule
    keys: list[Key] = []
    for item in _required(predicate):
        key: Key | None = None
        if type(item) is PathTest:
            key = _path_key(item)
        elif type(item) is KeywordTest and not item.matcher.has_slots:
            key = _PhraseKey(item)
        elif type(item) is TemplateTest:
            key = _template_key(item, names)
        if key is not None:
            keys.append(key)
    return min(keys, key=_rank, default=None)


def _payload_names(trigger: str) -> frozenset[str]:
    definition = default_triggers().get(trigger)
    return payload_names(definition.aliases) if definition else frozenset({"event"})


@dataclass
class _Patterns:
    searcher: RegexSet
    positions: list[list[int]]  # pattern index -> rule positions


@dataclass
class _Phrases:
    index: PhraseIndex
    positions: list[int]  # phrase id -> rule position


@dataclass
class RuleIndex:
    """The rules of one trigger (in order) and the tables that find their candidates."""

    rules: list[CompiledRule]
    always: list[int] = field(default_factory=list)
    values: dict[str, dict[Hashable, list[int]]] = field(default_factory=dict)
    patterns: dict[str, _Patterns] = field(default_factory=dict)
    phrases: dict[str, _Phrases] = field(default_factory=dict)

    @classmethod
    def of(cls, rules: list[CompiledRule]) -> RuleIndex:
        index = cls(list(rules))
        pattern_lists: dict[str, dict[str, list[int]]] = {}
        names: dict[str, frozenset[str]] = {}
        for position, rule in enumerate(index.rules):
            if not rule.enabled:
                continue  # never fires: the matcher says so when asked
            if rule.trigger not in names:
                names[rule.trigger] = _payload_names(rule.trigger)
            key = index_key(rule.predicate, names[rule.trigger])
            if key is None:
                index.always.append(position)
            elif isinstance(key, _ValueKey):
                table = index.values.setdefault(key.path, {})
                for value in dict.fromkeys(key.keys):
                    table.setdefault(value, []).append(position)
            elif isinstance(key, _PatternKey):
                by_pattern = pattern_lists.setdefault(key.path, {})
                by_pattern.setdefault(key.pattern, []).append(position)
            else:
                phrases = index.phrases.get(key.test.speaker)
                if phrases is None:
                    phrases = index.phrases[key.test.speaker] = _Phrases(PhraseIndex(), [])
                for phrase in key.test.matcher.phrases:
                    phrases.index.add(phrase, fuzzy=key.test.matcher.fuzzy)
                    phrases.positions.append(position)
        for phrases in index.phrases.values():
            phrases.index.build()
        for path, by_pattern in pattern_lists.items():
            try:
                searcher = RegexSet(list(by_pattern))
            except Exception:  # RE2 took each pattern alone; if not together, one by one
                log.exception("patterns on %s do not make one RE2 set", path)
                index.always.extend(p for positions in by_pattern.values() for p in positions)
                continue
            index.patterns[path] = _Patterns(searcher, list(by_pattern.values()))
        index.always.sort()
        return index

    def candidates(self, view: EventView) -> list[int]:
        """Positions of the rules that may fire for the event `view` shows, in rule order."""
        found = set(self.always)
        for path, table in self.values.items():
            found.update(self._guarded(path, self._by_value, table, view))
        for path, patterns in self.patterns.items():
            found.update(self._guarded(path, self._by_pattern, patterns, view))
        for speaker, phrases in self.phrases.items():
            found.update(self._guarded(speaker, self._by_phrase, phrases, view))
        return sorted(found)

    def _guarded(self, path: str, lookup: Any, table: Any, view: EventView) -> Iterable[int]:
        """`lookup(table, path, view)`, or every rule of `table` when it fails (so the rules
        are decided one by one, and their own failure is their reason)."""
        try:
            return list(lookup(table, path, view))
        except BudgetExceeded:  # out of time: each rule is decided (and skipped) for that
            return self._all_of(table)
        except Exception:
            log.exception("rule index lookup on %s failed; deciding its rules one by one", path)
            return self._all_of(table)

    @staticmethod
    def _all_of(table: Any) -> list[int]:
        """Every rule position a lookup table holds."""
        if isinstance(table, _Phrases):
            return list(table.positions)
        if isinstance(table, _Patterns):
            return [p for positions in table.positions for p in positions]
        return [p for positions in table.values() for p in positions]

    @staticmethod
    def _by_value(table: dict[Hashable, list[int]], path: str, view: EventView) -> Iterable[int]:
        for value in view.select(path):
            key = value_key(value)
            if key is not None:
                yield from table.get(key, ())

    @staticmethod
    def _by_pattern(patterns: _Patterns, path: str, view: EventView) -> Iterable[int]:
        for value in view.select(path):
            if isinstance(value, str):
                for pattern in patterns.searcher.search(value):
                    yield from patterns.positions[pattern]

    @staticmethod
    def _by_phrase(phrases: _Phrases, speaker: str, view: EventView) -> Iterable[int]:
        heard = phrases.index.heard(view.spoken(speaker), view.budget.check)
        return (phrases.positions[i] for i in heard)
