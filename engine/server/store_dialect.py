"""What differs in SQL between the store's backends, beyond placeholders and types (those
the PostgreSQL backend translates itself: engine.server.store_postgres)."""

from __future__ import annotations

import msgspec


class Dialect(msgspec.Struct, frozen=True):
    name: str
    # several receiver processes may share the store at once (PostgreSQL): live sessions
    # are then locked and read back per call, and outbox rows are leased
    shared: bool
    # the rows of a `decisions` JSON list (the column's name goes in for {decisions}), as
    # `d` with a column `value`
    decision_rows: str
    decision_rule: str  # the rule id of one such row
    decision_matched: str  # a condition: that row's rule matched
    # after a SELECT of rows to claim: skip rows another process is claiming
    skip_locked: str
    # asked first in an outbox claim's transaction (a query answering `got`): claims of
    # all receivers take turns, so per-target caps and ordered targets hold across them;
    # not got, another receiver is claiming and this one claims at its next round ("": the
    # store's write lock makes them take turns already)
    claim_lock: str
    # a statement taking a lock on a number (its one parameter) until the transaction ends:
    # "" where the writer's transaction already excludes every other writer (SQLite)
    lock_until_commit: str
