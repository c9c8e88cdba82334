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
from engine.rules.loader import (
    CompiledRule,
    RuleSet,
    broken_reasons,
    display_path,
    load_file,
    merge_rules,
    rule_files,
)
from engine.rules.templates import Templates

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

    def reload(self) -> RuleSet:
        """Compile every file again; returns (and publishes) the merged rule set."""
        files = rule_files(self.rules_dir)
        errors: list[RuleError] = []
        broken: dict[str, str] = {}
        present = set()
        for path in files:
            name = display_path(path)
            present.add(name)
            rules, file_errors, file_broken = load_file(path, self.registry, self.templates)
            errors.extend(file_errors)
            broken.update(broken_reasons(file_errors, file_broken))
            if file_errors and name in self._good:
                kept = ", ".join(r.id for r in self._good[name]) or "none"
                log.warning("%s has errors; keeping its last good rules (%s)", name, kept)
                continue
            if not file_errors or rules:
                self._good[name] = rules
        for gone in set(self._good) - present:
            del self._good[gone]
        merged, merge_errors, merge_broken = merge_rules(
            self._good[name] for name in sorted(self._good)
        )
        errors.extend(merge_errors)
        broken.update(merge_broken)
        if not self.rules_dir.is_dir():
            errors.append(RuleError(f"rules folder {display_path(self.rules_dir)} does not exist"))
        self.current = RuleSet(
            rules=merged, errors=errors, files=[display_path(p) for p in files], broken_ids=broken
        )
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
