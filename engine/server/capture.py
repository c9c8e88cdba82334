"""Durable capture of received webhooks: the event row and its planned actions are written
in one transaction, before the 200. Duplicates (Omi retries) are recognized here."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future
from random import Random
from typing import Any

import msgspec

from engine.runtime.payloads import Event
from engine.runtime.pipeline import Outcome
from engine.secrets import Secrets
from engine.server.dedupe import DedupeKey, claim_parts, key_column
from engine.server.outbox import idempotency_key
from engine.server.sealed import Sealer
from engine.server.statuses import ActionStatus, EventStatus
from engine.server.store import Db, Store, Write
from engine.server.why_not import stored_decisions
from engine.triggers import default_triggers

# seeded from os.urandom once: an id needs to be unique, not secret, and a system call per
# event (secrets.token_hex) hands the GIL away on the webhook's path
_id_bits = Random()
DEDUPE_WINDOW = 24 * 3600.0  # engine.config.Settings.dedupe_window's default


def new_event_id(now: float) -> str:
    """Sortable by time, unique: milliseconds then 40 random bits in hex."""
    return f"{int(now * 1000):013x}{_id_bits.getrandbits(40):010x}"


def stamp(event: Event, now: float) -> Event:
    """`event` as received at `now`, under a new id (a webhook's, or a derived one's)."""
    event.received_at = now
    event.id = new_event_id(now)
    return event


def dedupe_part(kind: str, uid: str, value: str) -> str:
    """One fact that makes a delivery a repeat, as a fixed-size digest: the uid and value
    are hashed as a JSON list, so no text a sender chooses (a newline, a colon) can make
    it equal to another user's part."""
    digest = hashlib.sha256(msgspec.json.encode([kind, uid, value])).hexdigest()[:40]
    return f"{kind}:{digest}"


def dedupe_key(
    event: Event,
    idempotency_key: str | None,
    *,
    delivery_id: str | None = None,
    signatures: list[str] | None = None,
) -> DedupeKey | None:
    """What makes a delivery a repeat: Omi's idempotency header, its delivery id, the memory
    id + uid (one memory can come under two headers: the developer webhook and an app), and
    a signature already seen (a replay within the signature's tolerance); any of them makes
    a repeat."""
    parts = []
    if idempotency_key:
        parts.append(dedupe_part("idem", event.uid, idempotency_key))
    if delivery_id:
        parts.append(dedupe_part("delivery", event.uid, delivery_id))
    trigger = default_triggers()[event.trigger]
    own_id = trigger.dedupe_id(event.doc)
    if own_id:
        parts.append(dedupe_part(trigger.name, event.uid, own_id))
    for signature in signatures or ():
        parts.append(dedupe_part("signature", event.uid, signature))
    return DedupeKey.of(parts)


def answer_context(event_id: str) -> str:
    """What an event's stored answer is sealed with (see engine.server.sealed)."""
    return f"{event_id}:answer"


def event_row(
    event: Event,
    *,
    body: bytes,
    params: dict[str, Any],
    status: EventStatus,
    key: DedupeKey | None,
    outcome: Outcome | None,
    response: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": event.id,
        "trigger": event.trigger,
        "uid": event.uid,
        "session_id": event.session_id,
        "received_at": event.received_at,
        "dedupe_key": key_column(key),
        "params": msgspec.json.encode(params).decode(),
        "body": body,
        "status": status,
        "decisions": stored_decisions(outcome),  # the rest: engine.server.why_not
        "rules_version": outcome.rules_version if outcome else None,
        "response": msgspec.json.encode(response).decode(),
    }


def action_rows(
    event: Event, outcome: Outcome, secrets: Secrets, sealer: Sealer, *, now: float
) -> list[dict[str, Any]]:
    """The outbox rows of an event's planned actions, requests sealed."""
    rows = []
    for action in outcome.actions:
        if action.request is None:
            status = ActionStatus.ERROR
        elif action.inline:
            status = ActionStatus.INLINE
        else:
            status = ActionStatus.PENDING
        request = None
        idem_key = idempotency_key(event.id, action.key_suffix)
        if action.request is not None:
            request = msgspec.json.encode(
                sealer.seal(msgspec.to_builtins(action.request), secrets, idem_key)
            ).decode()
        rows.append(
            {
                "idem_key": idem_key,
                "event_id": event.id,
                "rule_id": action.rule_id,
                "action_index": action.action_index,
                "item_index": action.item_index,
                "connector": action.connector,
                "target": secrets.mask(action.target or action.connector),
                "user_chosen": int(action.user_chosen),
                "request": request,
                "status": status,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": secrets.mask(action.error),  # may quote a rendered secret
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def write_event(
    store: Store,
    event: Event,
    outcome: Outcome | None,
    *,
    body: bytes,
    params: dict[str, Any],
    key: DedupeKey | None,
    status: EventStatus,
    response: dict[str, Any],
    secrets: Secrets,
    sealer: Sealer,
    also: Write | None = None,
    dedupe_window: float = DEDUPE_WINDOW,
) -> Future[Any]:
    """Queue the event and its actions as one write, with `also` (what the event changed
    of live sessions) in the same transaction; returns the store's future. A new event's
    dedupe key is claimed in the store too: its future raises RepeatOf when the store
    already has a delivery it repeats (another receiver's)."""
    row = event_row(
        event,
        body=body,
        params=params,
        status=status,
        key=key,
        outcome=outcome,
        # a notify message may carry a secret; Omi's retry gets the same answer, unsealed
        response=sealer.seal(response, secrets, answer_context(event.id)),
    )
    actions = action_rows(event, outcome, secrets, sealer, now=event.received_at) if outcome else []

    claim = key if status != EventStatus.DUPLICATE else None

    def write(db: Db) -> None:
        if claim is not None:
            claim_parts(db, claim, event.id, event.received_at, dedupe_window)
        insert_rows(db, "events", [row])
        if actions:
            insert_rows(db, "actions", actions)
        if also is not None:
            also(db)

    return store.submit(write)


def insert_rows(db: Db, table: str, rows: list[dict[str, Any]]) -> None:
    """Plain INSERTs of rows that share their keys, by name (the webhook's hot path: no
    sqlite-utils table lookups or type conversions per row; every value is already a str,
    bytes, number or None). `table` and the keys are ours, never a sender's."""
    sql = _INSERTS.get((table, *rows[0]))
    if sql is None:
        names = ", ".join(rows[0])
        sql = f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + k for k in rows[0])})"
        _INSERTS[(table, *rows[0])] = sql
    db.executemany(sql, rows) if len(rows) > 1 else db.execute(sql, rows[0])


_INSERTS: dict[tuple[str, ...], str] = {}  # (table, *columns) -> its INSERT statement


def record_rejection(
    store: Store,
    *,
    endpoint: str,
    status: int,
    reason: str,
    uid: str | None,
    size: int,
    keep: int,
) -> Future[Any]:
    now = time.time()

    row = {
        "received_at": now,
        "endpoint": endpoint,
        "uid": uid,
        "status": status,
        "reason": reason,
        "size": size,
    }

    def write(db: Db) -> None:
        insert_rows(db, "rejections", [row])
        db.execute(
            "DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - ?", [keep]
        )

    return store.submit(write)
