"""What happened, read back from the store: events with their decisions, actions with
their requests (masked), attempts and errors, dead letters and rejections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from engine.errors import PayloadError
from engine.runtime.payloads import Event, decode_event
from engine.server import why_not
from engine.server.sealed import shown
from engine.server.statuses import ActionStatus, EventStatus
from engine.server.store import Store
from engine.triggers import default_triggers, json_display

EVENT_COLUMNS = "id, trigger, uid, session_id, received_at, status, decisions, response, params"
ACTION_COLUMNS = (
    "id, event_id, rule_id, action_index, item_index, connector, status, attempts, "
    "next_attempt_at, last_status, last_error, response, request, created_at, updated_at"
)


def _json(text: str | None, default: Any) -> Any:
    return msgspec.json.decode(text) if text else default


def _event(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for name, default in (("decisions", []), ("response", {}), ("params", {})):
        row[name] = _json(row.get(name), default)
    row["response"] = shown(row["response"])
    return row


def _action(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["request"] = shown(_json(row.get("request"), None))
    return row


def list_events(
    store: Store,
    *,
    limit: int = 50,
    since: float | None = None,
    trigger: str | None = None,
    uid: str | None = None,
    fired: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """The newest events (their actions counted by status), filtered in the query: by
    trigger, uid, a rule that `fired` on them, or a `status` of theirs or of one of their
    actions."""
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if fired:
        sql = store.dialect
        decisions = sql.decision_rows.format(decisions="events.decisions")
        where.append(
            f"EXISTS (SELECT 1 FROM {decisions} WHERE {sql.decision_rule} = ? "
            f"AND {sql.decision_matched})"
        )
        params.append(fired)
    if status:
        where.append(
            "(status = ? OR EXISTS (SELECT 1 FROM actions a "
            "WHERE a.event_id = events.id AND a.status = ?))"
        )
        params += [status, status]
    if since is not None:
        where.append("received_at >= ?")
        params.append(since)
    if trigger:
        where.append("trigger = ?")
        params.append(trigger)
    if uid:
        where.append("uid = ?")
        params.append(uid)
    rows = store.query(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} "
        "ORDER BY received_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )
    events = [_event(row) for row in rows]
    if events:
        ids = [e["id"] for e in events]
        marks = ",".join("?" * len(ids))
        counts: dict[str, dict[str, int]] = {}
        for row in store.query(
            f"SELECT event_id, status, COUNT(*) AS n FROM actions "
            f"WHERE event_id IN ({marks}) GROUP BY event_id, status",
            tuple(ids),
        ):
            counts.setdefault(row["event_id"], {})[row["status"]] = row["n"]
        for event in events:
            event["actions"] = counts.get(event["id"], {})
    return events


def decisions_of(store: Store, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rule's decision for a stored event row (with its `decisions`, `rules_version`
    and what stored_event needs): the stored ones, and the others computed again from the
    rule version it was decided with (engine.server.why_not)."""
    stored = _json(row["decisions"], [])

    def calls() -> list[Event]:
        definition = default_triggers().get(row["trigger"])
        if definition is not None and definition.live_sessions:
            return session_events(store, row["id"])
        decoded = stored_event(row)
        return [decoded] if decoded is not None else []

    return why_not.complete(store, row["rules_version"] or "", stored, calls)


def event_detail(store: Store, event_id: str) -> dict[str, Any] | None:
    """One event: payload, every rule's decision (decisions_of), actions."""
    rows = store.query(
        f"SELECT {EVENT_COLUMNS}, body, rules_version FROM events WHERE id = ?", (event_id,)
    )
    if not rows:
        return None
    row = rows[0]
    event = _event(row)
    body = event.pop("body")
    event.pop("rules_version")
    event["decisions"] = decisions_of(store, row)
    trigger = default_triggers().get(event["trigger"])
    event["payload"] = (trigger.display if trigger else json_display)(body)
    event["actions"] = [
        _action(row)
        for row in store.query(
            f"SELECT {ACTION_COLUMNS} FROM actions WHERE event_id = ? ORDER BY id",
            (event_id,),
        )
    ]
    return event


def list_actions(
    store: Store, *, status: ActionStatus | str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    if status:
        rows = store.query(
            f"SELECT {ACTION_COLUMNS} FROM actions WHERE status = ? ORDER BY id DESC LIMIT ?",
            (status, limit),
        )
    else:
        rows = store.query(
            f"SELECT {ACTION_COLUMNS} FROM actions ORDER BY id DESC LIMIT ?",
            (limit,),
        )
    return [_action(row) for row in rows]


def list_rejections(store: Store, *, limit: int = 50) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM rejections ORDER BY id DESC LIMIT ?", (limit,))


def count_captured(store: Store, *, since: float | None = None) -> int:
    rows = store.query(
        "SELECT COUNT(*) AS n FROM events WHERE status != ? AND received_at >= ?",
        (EventStatus.DUPLICATE, since or 0),
    )
    return int(rows[0]["n"])


# OFFSET needs a LIMIT before it in SQLite; SQLite's "none" (-1) is an error in PostgreSQL,
# whose LIMIT ALL SQLite lacks: the largest 64-bit count is no limit in both
NO_LIMIT = 2**63 - 1


def captured_events(
    store: Store, *, since: float | None = None, limit: int | None = None, offset: int = 0
) -> Iterator[Event]:
    """Stored events (not repeats; those that failed to process too), oldest first,
    decoded again as they were received; `offset` skips that many of the oldest."""
    sql = (
        "SELECT id, trigger, uid, session_id, received_at, params, body FROM events "
        "WHERE status != ? AND received_at >= ? ORDER BY received_at, id"
    )
    params: tuple[Any, ...] = (EventStatus.DUPLICATE, since or 0)
    if limit is not None or offset:
        sql += " LIMIT ? OFFSET ?"
        params += (NO_LIMIT if limit is None else limit, offset)
    for row in store.rows(sql, params):
        event = stored_event(row)
        if event is not None:
            yield event


def captured_event(store: Store, event_id: str) -> Event | None:
    """One stored event by id, decoded again as it was received (None when absent)."""
    rows = store.query(f"SELECT {STORED_COLUMNS} FROM events WHERE id = ?", (event_id,))
    return stored_event(rows[0]) if rows else None


def stored_event(row: dict[str, Any]) -> Event | None:
    """A stored row decoded again as it was received (None: a stricter decoder refuses it)."""
    extra = _json(row["params"], {})
    try:
        event = decode_event(
            row["trigger"],
            row["body"],
            uid=row["uid"],
            session_id=row["session_id"] or extra.get("session_id", ""),
            sample_rate=extra.get("sample_rate"),
            session_duration_s=extra.get("session_duration_s"),
            speaking=extra.get("speaking"),
        )
    except PayloadError:
        return None  # stored before a stricter decoder; nothing to replay
    event.id = row["id"]
    event.received_at = row["received_at"]
    event.closing = bool(extra.get("closing"))
    return event


STORED_COLUMNS = "id, trigger, uid, session_id, received_at, params, body"


def events_by_id(store: Store, event_ids: list[str]) -> list[Event]:
    """The events with these ids, in the order asked (unknown ids are left out)."""
    if not event_ids:
        return []
    marks = ",".join("?" * len(event_ids))
    rows = store.query(
        f"SELECT {STORED_COLUMNS} FROM events WHERE id IN ({marks})", tuple(event_ids)
    )
    by_id = {row["id"]: stored_event(row) for row in rows}
    return [e for e in (by_id.get(i) for i in event_ids) if e is not None]


def session_events(store: Store, event_id: str, *, limit: int = 500) -> list[Event]:
    """The calls of the live session an event belongs to (same trigger, uid and session),
    oldest first, up to and including that event: what a transcript rule saw. An event of
    a trigger without live sessions is alone in its "session" (a transcript_session_end
    carries its whole session; an earlier one under the same session id was another
    conversation)."""
    rows = store.query(
        "SELECT trigger, uid, session_id, received_at FROM events WHERE id = ?", (event_id,)
    )
    if not rows:
        return []
    first = rows[0]
    definition = default_triggers().get(first["trigger"])
    if definition is None or not definition.live_sessions:
        return events_by_id(store, [event_id])
    picked = store.query(
        f"SELECT {STORED_COLUMNS} FROM events WHERE trigger = ? AND uid = ? "
        "AND COALESCE(session_id, '') = COALESCE(?, '') AND received_at <= ? AND status != ? "
        "ORDER BY received_at DESC, id DESC LIMIT ?",
        (
            first["trigger"],
            first["uid"],
            first["session_id"],
            first["received_at"],
            EventStatus.DUPLICATE,
            limit,
        ),
    )
    events = [stored_event(row) for row in reversed(picked)]
    return [e for e in events if e is not None]


def rule_stats(store: Store, since: float) -> dict[str, dict[str, Any]]:
    """Per rule since `since`: times fired, the last time, actions that failed or gave up."""
    stats: dict[str, dict[str, Any]] = {}
    sql = store.dialect
    decisions = sql.decision_rows.format(decisions="e.decisions")
    for row in store.query(
        # S608: the dialect's own fragments; the time is a parameter
        f"SELECT {sql.decision_rule} AS rule, COUNT(*) AS fired, "
        f"MAX(e.received_at) AS last_fired FROM events e, {decisions} "
        f"WHERE e.received_at >= ? AND {sql.decision_matched} GROUP BY 1",
        (since,),
    ):
        stats[row["rule"]] = {"fired": row["fired"], "last_fired": row["last_fired"], "failed": 0}
    for row in store.query(
        "SELECT rule_id, COUNT(*) AS failed FROM actions WHERE created_at >= ? "
        "AND status IN (?, ?) GROUP BY rule_id",
        (since, ActionStatus.DEAD, ActionStatus.ERROR),
    ):
        entry = stats.setdefault(row["rule_id"], {"fired": 0, "last_fired": None, "failed": 0})
        entry["failed"] = row["failed"]
    return stats


def recent_events(
    store: Store, *, trigger: str | None = None, since: float | None = None, limit: int = 500
) -> list[Event]:
    """The last `limit` captured events (of one trigger, when given), oldest first."""
    sql = f"SELECT {STORED_COLUMNS} FROM events WHERE status != ? AND received_at >= ?"
    params: list[Any] = [EventStatus.DUPLICATE, since or 0]
    if trigger:
        sql += " AND trigger = ?"
        params.append(trigger)
    rows = store.query(sql + " ORDER BY received_at DESC, id DESC LIMIT ?", (*params, limit))
    events = [stored_event(row) for row in reversed(rows)]
    return [e for e in events if e is not None]
