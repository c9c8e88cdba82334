"""The action outbox: one row per planned action, from `pending` to `delivered` or `dead`.

    pending --claim--> in_flight --ok--> delivered
       ^                   |--retryable, attempts left--> pending (next_attempt_at later)
       |                   '--permanent or exhausted----> dead --retry (API/CLI)--> pending
       '-- restart: in_flight rows go back to pending (the process died mid-send)

Requests are stored with secrets sealed (`engine.server.sealed`: `<secret:NAME:MAC>`, bound to the
action's idempotency key) and opened just before sending, so the database never holds a
secret, a rotated secret applies to retries, and payload text can never open one.
Rows that cannot be sent (`error`: the template failed) and notify answers (`inline`,
returned in the webhook response) are kept for history.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from engine.config import RetryPolicy
from engine.server.statuses import ActionStatus
from engine.server.store import Db, Store

PENDING, IN_FLIGHT, DELIVERED, DEAD = (
    ActionStatus.PENDING,
    ActionStatus.IN_FLIGHT,
    ActionStatus.DELIVERED,
    ActionStatus.DEAD,
)


def idempotency_key(event_id: str, key_suffix: str) -> str:
    return f"{event_id}:{key_suffix}"


@dataclass
class DueAction:
    id: int
    idem_key: str
    event_id: str
    rule_id: str
    connector: str
    target: str
    request: str
    attempts: int
    user_chosen: int = 0  # read a per-user setting: sent through Deliverer.user_guard
    lease_owner: str = ""  # the Deliverer that claimed it (only its outcome is written)


def recover_in_flight(store: Store) -> int:
    """After a crash: whatever was being sent goes back to pending (sent again, with the
    same idempotency key). Only for a store this process alone uses: in a shared one
    (PostgreSQL) the other receivers' actions are in flight too, and a dead receiver's are
    taken over when their lease runs out (claim_due)."""
    if store.dialect.shared:
        return 0

    def write(db: Db) -> int:
        cursor = db.execute("UPDATE actions SET status = ? WHERE status = ?", [PENDING, IN_FLIGHT])
        return int(cursor.rowcount)

    recovered: int = store.write_now(write)
    return recovered


def counts_by_status(store: Store, statuses: Sequence[str] | None = None) -> dict[str, int]:
    """How many actions are in each status (only `statuses`, when given); blocking: code on
    the event loop calls it through `Store.read`."""
    if statuses is None:
        rows = store.query("SELECT status, COUNT(*) AS n FROM actions GROUP BY status")
    else:
        rows = store.query(
            # S608: only "?" marks are joined in; every value is a parameter
            f"SELECT status, COUNT(*) AS n FROM actions WHERE {_in('status', statuses)} "
            "GROUP BY status",
            tuple(statuses),
        )
    return {row["status"]: row["n"] for row in rows}


# an old row (before the target column) counts as its connector's target
_TARGET = "COALESCE(target, connector)"
# what may be claimed at `now` (the first ? of its two): a pending action whose time has
# come, or one whose receiver's lease ran out (it died mid-send: sent again, same key)
_CLAIMABLE = (
    "((status = ? AND next_attempt_at <= ?) OR (status = ? AND lease_until IS NOT NULL "
    "AND lease_until < ?))"
)


def _in(column: str, values: Sequence[object]) -> str:
    """`column IN (?, ...)`, or false for no values (SQL has no empty IN list)."""
    return f"{column} IN ({','.join('?' * len(values))})" if values else "1 = 0"


async def claim_due(
    store: Store,
    now: float,
    limit: int,
    *,
    per_target: int | None = None,
    blocked: Sequence[str] = (),
    single: Sequence[str] = (),
    ordered: Sequence[str] = (),
    lease: float = 60.0,
    owner: str = "",
) -> list[DueAction]:
    """Due actions, marked in_flight in the same transaction and leased until `now +
    lease` (Deliverer renews the lease while it sends; another receiver takes the action
    over once it runs out).

    With `per_target`, no target gets more than that many actions in flight (those already
    in flight count), so one slow destination cannot take every worker. Nothing is claimed
    for a `blocked` target (its circuit is open), at most one in all for a `single` one
    (the half-open probe) and for a target of an `ordered` connector (its actions go one
    at a time, oldest first: engine.connector.order_key_of). In a shared store (PostgreSQL)
    the receivers' claims take turns (an advisory lock to the claim's commit; a receiver
    that finds it taken claims nothing this round), so the caps hold across them, and rows
    another receiver is updating are skipped (FOR UPDATE SKIP LOCKED)."""
    claimable = [PENDING, now, IN_FLIGHT, now]

    def write(db: Db) -> list[DueAction]:
        if store.dialect.claim_lock and not next(db.query(store.dialect.claim_lock))["got"]:
            return []  # another receiver is claiming: this one's turn comes at its next round
        cap = per_target if per_target is not None else limit
        not_blocked = f"NOT {_in(_TARGET, blocked)}"
        one_only = f"{_in('due.target', single)} OR {_in('due.connector', ordered)}"
        rows = list(
            db.query(
                # S608: only "?" marks and our own fragments are joined in; every value is
                # a parameter
                f"""
                WITH busy AS (
                    SELECT {_TARGET} AS t, COUNT(*) AS n FROM actions
                    WHERE status = ? AND (lease_until IS NULL OR lease_until >= ?)
                    GROUP BY {_TARGET}
                ), due AS (
                    SELECT id, idem_key, event_id, rule_id, connector, {_TARGET} AS target,
                        request, attempts, user_chosen, next_attempt_at,
                        ROW_NUMBER() OVER (
                            PARTITION BY {_TARGET} ORDER BY next_attempt_at, id
                        ) AS place
                    FROM actions
                    WHERE {_CLAIMABLE} AND {not_blocked}
                )
                SELECT id, idem_key, event_id, rule_id, connector, due.target, request, attempts,
                    user_chosen
                FROM due LEFT JOIN busy ON busy.t = due.target
                WHERE place + COALESCE(busy.n, 0)
                    <= CASE WHEN {one_only} THEN 1 ELSE ? END
                ORDER BY next_attempt_at, id LIMIT ?
                """,
                [IN_FLIGHT, now, *claimable, *blocked, *single, *ordered, cap, limit],
            )
        )
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        # another receiver may be claiming some of them right now: those are skipped (and
        # one it claimed since this transaction began no longer passes _CLAIMABLE)
        mine = {
            row["id"]
            for row in db.query(
                f"SELECT id FROM actions WHERE {_in('id', ids)} AND {_CLAIMABLE}"
                f"{store.dialect.skip_locked}",
                [*ids, *claimable],
            )
        }
        rows = [row for row in rows if row["id"] in mine]
        if rows:
            ids = [row["id"] for row in rows]
            db.execute(
                "UPDATE actions SET status = ?, lease_until = ?, lease_owner = ?, updated_at = ? "
                f"WHERE {_in('id', ids)}",
                [IN_FLIGHT, now + lease, owner, now, *ids],
            )
        return [DueAction(**row, lease_owner=owner) for row in rows]

    due: list[DueAction] = await store.write(write)
    return due


async def renew_leases(
    store: Store, action_ids: Sequence[int], until: float, owner: str = ""
) -> int:
    """Keep the actions `owner` (a Deliverer) is sending leased until `until`; how many
    were (one another receiver took over after a lapse stays that one's)."""
    if not action_ids:
        return 0

    def write(db: Db) -> int:
        cursor = db.execute(
            "UPDATE actions SET lease_until = ? WHERE status = ? AND lease_owner = ? "
            f"AND {_in('id', action_ids)}",
            [until, IN_FLIGHT, owner, *action_ids],
        )
        return int(cursor.rowcount)

    renewed: int = await store.write(write)
    return renewed


MAX_RETRY_AFTER = 24 * 3600.0  # a longer (or infinite) Retry-After is taken as a day


def backoff(policy: RetryPolicy, attempts: int, retry_after: float | None) -> float:
    """Seconds to wait after `attempts` failed tries: exponential with jitter, but never
    sooner than the service's Retry-After."""
    exponent = min(max(0, attempts - 1), 64)  # 2**64 s is past any max_delay; no overflow
    delay = min(policy.max_delay, policy.base_delay * 2**exponent)
    delay *= 1 + random.uniform(-policy.jitter, policy.jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return max(0.0, float(delay))


# an attempt's outcome is written only while its sender still holds the action: one whose
# lease lapsed (it stalled) and that another receiver took over leaves it to that one
_HELD = "id = ? AND status = ? AND lease_owner = ?"


async def mark_delivered(
    store: Store, action: DueAction, *, now: float, status: int | None, response: str
) -> None:
    def write(db: Db) -> None:
        db.execute(
            "UPDATE actions SET status = ?, attempts = attempts + 1, last_status = ?, "
            f"response = ?, last_error = NULL, updated_at = ? WHERE {_HELD}",
            [DELIVERED, status, response, now, action.id, IN_FLIGHT, action.lease_owner],
        )

    await store.write(write)


async def mark_failed(
    store: Store,
    action: DueAction,
    *,
    now: float,
    error: str,
    status: int | None,
    retry_at: float | None,
) -> None:
    """A failed attempt: back to pending at `retry_at`, or dead when it is None."""

    def write(db: Db) -> None:
        db.execute(
            "UPDATE actions SET status = ?, attempts = attempts + 1, last_status = ?, "
            f"last_error = ?, next_attempt_at = ?, updated_at = ? WHERE {_HELD}",
            [
                PENDING if retry_at is not None else DEAD,
                status,
                error,
                retry_at if retry_at is not None else now,
                now,
                action.id,
                IN_FLIGHT,
                action.lease_owner,
            ],
        )

    await store.write(write)


def retry_action(store: Store, action_id: int, now: float) -> Future[bool]:
    """Send a dead action again, with a fresh count of attempts (so it gets the full
    backoff again); resolves False when there is no such action to retry."""

    def write(db: Db) -> bool:
        cursor = db.execute(
            "UPDATE actions SET status = ?, attempts = 0, next_attempt_at = ?, updated_at = ? "
            "WHERE id = ? AND status IN (?, ?) AND request IS NOT NULL",
            [PENDING, now, now, action_id, DEAD, PENDING],
        )
        return bool(cursor.rowcount == 1)

    return store.submit(write)


def purge_dead(store: Store, action_ids: list[int] | None = None) -> Future[int]:
    """Forget dead letters: these ids, or every one when None. Resolves to how many went;
    an action that is not dead (delivered, pending) is never touched."""

    def write(db: Db) -> int:
        if action_ids is None:
            cursor = db.execute("DELETE FROM actions WHERE status = ?", [DEAD])
        else:
            cursor = db.execute(
                f"DELETE FROM actions WHERE status = ? AND {_in('id', action_ids)}",
                [DEAD, *action_ids],
            )
        return int(cursor.rowcount)

    return store.submit(write)
