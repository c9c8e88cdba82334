"""Rules that follow the folder: reloaded on change, a broken file keeps its last good rules.

Each file is compiled on its own. When a file fails, its errors are reported and the rules
it had before stay live; when it is fixed or deleted, that changes too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from engine.connector import Registry, default_registry
from engine.errors import RuleError
from engine.loader import CompiledRule, RuleSet, display_path, load_file
from engine.templates import Templates

log = logging.getLogger("omi_rules.rules")


class LiveRules:
    def __init__(
        self,
        rules_dir: str,
        *,
        registry: Registry | None = None,
        on_change: Callable[[RuleSet], None] | None = None,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.registry = registry or default_registry()
        self.templates = Templates()
        self.on_change = on_change
        self._good: dict[str, list[CompiledRule]] = {}  # file -> last rules it loaded cleanly
        self.current = RuleSet()
        self.generation = 0

    def reload(self) -> RuleSet:
        """Compile every file again; returns (and publishes) the merged rule set."""
        files = (
            sorted(
                p for p in self.rules_dir.glob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
            )
            if self.rules_dir.is_dir()
            else []
        )
        errors: list[RuleError] = []
        broken: dict[str, str] = {}
        present = set()
        for path in files:
            name = display_path(path)
            present.add(name)
            rules, file_errors, file_broken = load_file(path, self.registry, self.templates)
            errors.extend(file_errors)
            for rule_id in file_broken:
                broken[rule_id] = next(
                    (e.message for e in file_errors if e.rule_id == rule_id), "rule has errors"
                )
            if file_errors and name in self._good:
                kept = ", ".join(r.id for r in self._good[name]) or "none"
                log.warning("%s has errors; keeping its last good rules (%s)", name, kept)
                continue
            if not file_errors or rules:
                self._good[name] = rules
        for gone in set(self._good) - present:
            del self._good[gone]
        merged, seen = [], {}
        for name in sorted(self._good):
            for rule in self._good[name]:
                if rule.id in seen:
                    errors.append(
                        RuleError(
                            f"duplicate rule id '{rule.id}' (first defined at {seen[rule.id]})",
                            file=rule.file,
                            line=rule.line,
                            column=1,
                            rule_id=rule.id,
                        )
                    )
                    continue
                seen[rule.id] = f"{rule.file}:{rule.line}"
                merged.append(rule)
        if not self.rules_dir.is_dir():
            errors.append(RuleError(f"rules folder {display_path(self.rules_dir)} does not exist"))
        self.current = RuleSet(
            rules=merged, errors=errors, files=[display_path(p) for p in files], broken_ids=broken
        )
        self.generation += 1
        for error in errors:
            log.error("%s", error)
        if self.on_change:
            self.on_change(self.current)
        return self.current

    async def watch(self) -> None:
        """Reload whenever a file in the folder changes (runs until cancelled)."""
        from watchfiles import awatch

        async for _changes in awatch(self.rules_dir, debounce=200, recursive=False):
            self.reload()
            log.info(
                "rules reloaded: %d rule(s), %d error(s)",
                len(self.current.rules),
                len(self.current.errors),
            )
