"""Retention: events, their actions and rejections older than `retention_days` are deleted,
so nobody can fill the disk by posting and history stays fast.

An event is kept while any of its actions may still be sent (pending or in flight). The
server sweeps once at start and then daily; `omi-rules prune` does the same by hand. Work
goes in batches, each its own short transaction, so webhooks keep being written meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.server.statuses import UNFINISHED
from engine.server.store import Db, Store

log = logging.getLogger("omi_rules.retention")

DAY = 24 * 3600.0
BATCH = 2000


@dataclass
class Pruned:
    events: int = 0
    actions: int = 0
    rejections: int = 0

    def __str__(self) -> str:
        return f"{self.events} event(s), {self.actions} action(s), {self.rejections} rejection(s)"


def _prune_batch(cutoff: float, batch: int) -> Callable[[Db], Pruned]:
    def write(db: Db) -> Pruned:
        ids = [
            row[0]
            for row in db.execute(
                "SELECT id FROM events WHERE received_at < ? AND NOT EXISTS ("
                "  SELECT 1 FROM actions WHERE actions.event_id = events.id"
                "  AND actions.status IN (?, ?)"
                ") ORDER BY received_at LIMIT ?",
                [cutoff, *UNFINISHED, batch],
            ).fetchall()
        ]
        done = Pruned()
        if ids:
            marks = ",".join("?" * len(ids))
            done.actions = db.execute(
                f"DELETE FROM actions WHERE event_id IN ({marks})",  # only ? marks are interpolated
                ids,
            ).rowcount
            done.events = db.execute(
                f"DELETE FROM events WHERE id IN ({marks})",  # only ? marks are interpolated
                ids,
            ).rowcount
        done.rejections = db.execute(
            "DELETE FROM rejections WHERE id IN ("
            "  SELECT id FROM rejections WHERE received_at < ? LIMIT ?)",
            [cutoff, batch],
        ).rowcount
        return done

    return write


def _prune_versions(cutoff: float) -> Callable[[Db], None]:
    """Forget the rule versions no kept event was decided with (never the one serving
    now), and dedupe key parts as old as the events that went: once per sweep."""

    def write(db: Db) -> None:
        # the dedupe key parts of events this old (engine.server.dedupe.claim_parts)
        db.execute("DELETE FROM dedupe_parts WHERE received_at < ?", [cutoff])
        db.execute(
            "DELETE FROM rule_versions WHERE created_at < ? AND NOT EXISTS ("
            "  SELECT 1 FROM events WHERE events.rules_version = rule_versions.version"
            ") AND version != (SELECT version FROM rule_versions ORDER BY created_at DESC LIMIT 1)",
            [cutoff],
        )

    return write


async def prune_async(
    store: Store, *, older_than_days: float, now: float, batch: int = BATCH
) -> Pruned:
    return await _prune(lambda write: store.write(write), older_than_days, now, batch)


def prune(store: Store, *, older_than_days: float, now: float, batch: int = BATCH) -> Pruned:
    """Delete what is older than `older_than_days` (blocking; for the command line)."""

    async def run_blocking(write: Callable[[Db], Any]) -> Any:
        return store.write_now(write)

    return asyncio.run(_prune(run_blocking, older_than_days, now, batch))


async def _prune(
    run: Callable[[Callable[[Db], Any]], Awaitable[Pruned]],
    older_than_days: float,
    now: float,
    batch: int,
) -> Pruned:
    cutoff = now - older_than_days * DAY
    total = Pruned()
    while True:
        done = await run(_prune_batch(cutoff, batch))
        total.events += done.events
        total.actions += done.actions
        total.rejections += done.rejections
        if done.events < batch and done.rejections < batch:
            await run(_prune_versions(cutoff))
            return total


async def sweep_daily(store: Store, older_than_days: float, clock: Callable[[], float]) -> None:
    """Prune now, then once a day (runs until cancelled)."""
    while True:
        try:
            pruned = await prune_async(store, older_than_days=older_than_days, now=clock())
            if pruned.events or pruned.rejections:
                log.info("retention: deleted %s older than %g days", pruned, older_than_days)
        except Exception:  # a failed sweep is tried again tomorrow; serving goes on
            log.exception("retention sweep failed")
        await asyncio.sleep(DAY)
