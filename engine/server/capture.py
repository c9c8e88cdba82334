"""Durable capture of received webhooks: the event row and its planned actions are written
in one transaction, before the 200. Duplicates (Omi retries) are recognized here."""

from __future__ import annotations

import hashlib
import secrets as random
import time
from collections import OrderedDict
from typing import Any

import msgspec
import sqlite_utils

from engine.runtime.payloads import Event
from engine.runtime.pipeline import Outcome
from engine.secrets import Secrets
from engine.server.outbox import action_rows
from engine.server.sealed import Sealer
from engine.server.store import Store


def new_event_id(now: float) -> str:
    """Sortable by time, unique: milliseconds then random hex."""
    return f"{int(now * 1000):013x}{random.token_hex(5)}"


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
) -> str | None:
    """What makes a delivery a repeat: Omi's idempotency header, its delivery id, the memory
    id + uid (one memory can come under two headers: the developer webhook and an app), and
    a signature already seen (a replay within the signature's tolerance). The parts are
    joined by newlines (a digest holds none); any of them makes a repeat."""
    parts = []
    if idempotency_key:
        parts.append(dedupe_part("idem", event.uid, idempotency_key))
    if delivery_id:
        parts.append(dedupe_part("delivery", event.uid, delivery_id))
    if event.trigger == "memory" and event.doc.get("id"):
        parts.append(dedupe_part("memory", event.uid, str(event.doc["id"])))
    for signature in signatures or ():
        parts.append(dedupe_part("signature", event.uid, signature))
    return "\n".join(parts) or None


class Deduper:
    """Recent dedupe keys in memory (seeded from the store), so concurrent repeats of one
    delivery are caught before either is written. Keys are kept in the order they were
    claimed, so expiry drops them from the front: each claim costs O(1) amortized."""

    def __init__(self, window: float, max_keys: int = 1_000_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()  # key -> (at, event)

    def seed(self, store: Store, now: float) -> None:
        for row in store.rows(
            "SELECT dedupe_key, received_at, id FROM events "
            "WHERE dedupe_key IS NOT NULL AND received_at > ? AND status != 'duplicate' "
            "ORDER BY received_at",
            (now - self.window,),
        ):
            for part in row["dedupe_key"].split("\n"):
                self._remember(part, row["received_at"], row["id"])

    def claim(self, key: str | None, event_id: str, now: float) -> str | None:
        """None when `key` is new (now claimed); else the id of the event it repeats."""
        if key is None:
            return None
        self.prune(now)
        parts = key.split("\n")
        for part in parts:
            seen = self._seen.get(part)
            if seen is not None:
                return seen[1]
        for part in parts:
            self._remember(part, now, event_id)
        return None

    def _remember(self, part: str, at: float, event_id: str) -> None:
        self._seen[part] = (at, event_id)
        self._seen.move_to_end(part)
        while len(self._seen) > self.max_keys:  # a flood of new keys: forget the oldest
            self._seen.popitem(last=False)

    def release(self, key: str | None) -> None:
        if key is not None:
            for part in key.split("\n"):
                self._seen.pop(part, None)

    def prune(self, now: float) -> None:
        """Forget keys older than the window (the oldest are first)."""
        while self._seen:
            at, _event = next(iter(self._seen.values()))
            if now - at <= self.window:
                return
            self._seen.popitem(last=False)


def answer_context(event_id: str) -> str:
    """What an event's stored answer is sealed with (see engine.server.sealed)."""
    return f"{event_id}:answer"


def decisions_json(outcome: Outcome | None) -> str:
    if outcome is None:
        return "[]"
    return msgspec.json.encode(
        [{"rule": d.rule.id, "matched": d.matched, "reason": d.reason} for d in outcome.decisions]
    ).decode()


def event_row(
    event: Event,
    *,
    body: bytes,
    params: dict[str, Any],
    status: str,
    key: str | None,
    outcome: Outcome | None,
    response: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": event.id,
        "trigger": event.trigger,
        "uid": event.uid,
        "session_id": event.session_id,
        "received_at": event.received_at,
        "dedupe_key": key,
        "params": msgspec.json.encode(params).decode(),
        "body": body,
        "status": status,
        "decisions": decisions_json(outcome),
        "response": msgspec.json.encode(response).decode(),
    }


def write_event(
    store: Store,
    event: Event,
    outcome: Outcome | None,
    *,
    body: bytes,
    params: dict[str, Any],
    key: str | None,
    status: str,
    response: dict[str, Any],
    secrets: Secrets,
    sealer: Sealer,
):  # a Future
    """Queue the event and its actions as one write; returns the store's future."""
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

    def write(db: sqlite_utils.Database) -> None:
        db["events"].insert(row)
        if actions:
            db["actions"].insert_all(actions)

    return store.submit(write)


def record_rejection(
    store: Store,
    *,
    endpoint: str,
    status: int,
    reason: str,
    uid: str | None,
    size: int,
    keep: int,
):  # a Future
    now = time.time()

    def write(db: sqlite_utils.Database) -> None:
        db["rejections"].insert(
            {
                "received_at": now,
                "endpoint": endpoint,
                "uid": uid,
                "status": status,
                "reason": reason,
                "size": size,
            }
        )
        db.execute(
            "DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - ?", [keep]
        )

    return store.submit(write)
