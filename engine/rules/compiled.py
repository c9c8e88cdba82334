"""Compiled rules: what the loader produces and the runtime reads (one rule's predicate,
actions, secrets and limits; the rule set by trigger)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from engine.connector import Connector
from engine.errors import RuleError
from engine.rules.predicates import AllOf
from engine.rules.rule_index import RuleIndex
from engine.rules.rule_model import Rule, UserSetting


@dataclass
class CompiledAction:
    index: int
    connector: Connector[Any, Any]
    options: msgspec.Struct

    @property
    def name(self) -> str:
        return self.connector.name


@dataclass
class CompiledRule:
    id: str
    spec: Rule
    file: str
    line: int
    predicate: AllOf
    actions: list[CompiledAction]
    secrets: frozenset[str]
    cooldown: float | None = None
    uids: frozenset[str] | None = None
    trusted_hosts: frozenset[str] = frozenset()  # hosts its actions name literally
    warnings: list[RuleError] = field(default_factory=list)  # valid, but likely a mistake
    # per-user settings (`settings:`) its actions read, and which of them must be set
    settings: tuple[UserSetting, ...] = ()
    required_settings: frozenset[str] = frozenset()
    # the setting names each action's templates read (index of the action -> names)
    action_settings: dict[int, frozenset[str]] = field(default_factory=dict)

    @property
    def trigger(self) -> str:
        return self.spec.trigger

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    def context(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.spec.description, "trigger": self.trigger}


@dataclass
class RuleSet:
    rules: list[CompiledRule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    broken_ids: dict[str, str] = field(default_factory=dict)  # rule id -> first error
    version: str = ""  # the snapshot history keeps of these rules (engine.server.rule_versions)

    def __post_init__(self) -> None:
        self.by_trigger: dict[str, list[CompiledRule]] = {}
        for rule in self.rules:
            self.by_trigger.setdefault(rule.trigger, []).append(rule)
        self.trusted_hosts = frozenset().union(*(rule.trusted_hosts for rule in self.rules))
        # triggers with a rule that reads per-user settings (their events load the user's)
        self.settings_triggers = frozenset(rule.trigger for rule in self.rules if rule.settings)
        # per-user settings any rule declares secret (engine.server.user_settings)
        self.secret_settings = frozenset(
            s.name for rule in self.rules for s in rule.settings if s.secret
        )
        self._indexes: dict[str, RuleIndex] = {}

    @property
    def warnings(self) -> list[RuleError]:
        return [warning for rule in self.rules for warning in rule.warnings]

    def for_trigger(self, trigger: str) -> list[CompiledRule]:
        return self.by_trigger.get(trigger, [])

    def index_for(self, trigger: str) -> RuleIndex:
        """The rule index of `trigger`'s rules, built on first use (engine.rules.rule_index)."""
        index = self._indexes.get(trigger)
        if index is None:
            index = self._indexes[trigger] = RuleIndex.of(self.for_trigger(trigger))
        return index

    def get(self, rule_id: str) -> CompiledRule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)
