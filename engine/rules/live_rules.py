"""Rules that follow the folder: reloaded on change, a broken file keeps its last good rules.

Each file is compiled on its own. When a file fails, its errors are reported and the rules
it had before stay live; when it is fixed or deleted, that changes too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from engine.connector import Registry, default_registry
from engine.rules.compiled import CompiledRule, RuleSet
from engine.rules.loader import compile_folder
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
        self.current = compile_folder(self.rules_dir, self.registry, self.templates, self._good)
        for error in self.current.errors:
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
