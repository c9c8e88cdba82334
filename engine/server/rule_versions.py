"""The rules an event was decided with, kept once per version: history stores only the
decisions it cannot compute again (engine.server.why_not), and computes the others from the
event and the version it names.

A version is each rule's decoded spec (what the validator produced, so it compiles again
without the files), its id, file and line, and the names of the secrets that were unset
while it served (a rule skipped for them says so again when replayed); its name is a digest
of that text. A server stores one row per rules change or restart, not per event.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any

import msgspec

from engine.connector import Registry, default_registry
from engine.rules.compiled import CompiledRule, RuleSet
from engine.rules.loader import load_text
from engine.rules.templates import Templates
from engine.secrets import Secrets
from engine.server.store import Db, Store

KEPT_COMPILED = 4  # versions kept compiled in memory (10,000 rules take a while to compile)


class RuleRecord(msgspec.Struct):
    id: str
    file: str
    line: int
    spec: dict[str, Any]
    unset: list[str] = []  # its secrets that were not set


class Version(msgspec.Struct):
    """A stored version compiled again, with the secrets it ran with: every secret its rules
    name but those that were unset (names only; a replay is a dry-run)."""

    rules: RuleSet
    secrets: Secrets


def snapshot(rules: RuleSet, secrets: Secrets) -> tuple[str, bytes]:
    """(version, stored text) of a rule set served with `secrets`."""
    records = [
        RuleRecord(r.id, r.file, r.line, msgspec.to_builtins(r.spec), secrets.missing(r.secrets))
        for r in sorted(rules.rules, key=lambda r: r.id)
    ]
    text = msgspec.json.encode(records)
    return hashlib.sha256(text).hexdigest()[:20], text


def remember(store: Store, rules: RuleSet, secrets: Secrets) -> Future[None]:
    """Name the rule set's version (sets `rules.version`) and store it once; its time is
    that of the last load, so the version serving now is always the newest."""
    version, text = snapshot(rules, secrets)
    rules.version = version
    named = set().union(*(rule.secrets for rule in rules.rules))
    unset = {name for rule in rules.rules for name in secrets.missing(rule.secrets)}
    VERSIONS.keep(version, Version(rules, Secrets(dict.fromkeys(named - unset, "set"))))

    def write(db: Db) -> None:
        db.execute(
            "INSERT INTO rule_versions (version, created_at, rules) VALUES (?, ?, ?) "
            "ON CONFLICT(version) DO UPDATE SET created_at = excluded.created_at",
            [version, time.time(), text],
        )

    return store.submit(write)


def compile_records(text: bytes, registry: Registry) -> Version:
    """The stored rules compiled again, with their ids, files and lines as they were."""
    records = msgspec.json.decode(text, type=list[RuleRecord])
    unset = {name for record in records for name in record.unset}
    specs = [{**record.spec, "id": record.id} for record in records]
    rules, _errors, _broken = load_text(
        msgspec.json.encode(specs).decode(), "(rule version)", registry, Templates()
    )
    where = {record.id: record for record in records}
    restored: list[CompiledRule] = []
    for rule in rules:
        record = where[rule.id]
        rule.file, rule.line = record.file, record.line
        restored.append(rule)
    named = set().union(*(rule.secrets for rule in restored))
    return Version(RuleSet(rules=restored), Secrets(dict.fromkeys(named - unset, "set")))


class VersionCache:
    """Versions compiled on first use, the last few kept."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or default_registry()
        self._compiled: OrderedDict[str, Version] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, version: str, compiled: Version) -> None:
        """A version compiled already (the one just loaded): explaining its events needs
        no second compile."""
        with self._lock:
            self._compiled[version] = compiled
            self._compiled.move_to_end(version)
            while len(self._compiled) > KEPT_COMPILED:
                self._compiled.popitem(last=False)

    def get(self, store: Store, version: str) -> Version | None:
        with self._lock:
            if version in self._compiled:
                self._compiled.move_to_end(version)
                return self._compiled[version]
        rows = store.query("SELECT rules FROM rule_versions WHERE version = ?", (version,))
        if not rows:
            return None
        compiled = compile_records(rows[0]["rules"], self.registry)
        compiled.rules.version = version
        self.keep(version, compiled)
        return compiled


VERSIONS = VersionCache()
