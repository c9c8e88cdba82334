"""Retention through a real server and the `prune` command: old events go, with their
actions and rejections; an event whose actions may still be sent stays."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from engine.cli import main
from engine.server.store import Db, Store
from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.wait import wait_until

DAY = 86400


def with_store(db: str, write: Callable[[Db], Any]) -> Any:
    """`write` in a Store of its own on `db` (no server has it open now)."""
    store = Store(db)
    try:
        return store.write_now(write)
    finally:
        store.close()


def age(db: str, days: float) -> None:
    """Move stored rows `days` into the past, as if they had waited that long."""

    def write(conn: Db) -> None:
        conn.execute("UPDATE events SET received_at = received_at - ?", [days * DAY])
        conn.execute("UPDATE rejections SET received_at = received_at - ?", [days * DAY])

    with_store(db, write)


def test_prune_deletes_old_events_actions_and_rejections_but_not_unsent_work(
    tmp_path: Path, store_target: str
) -> None:
    # no sweep: prune by hand
    settings = server_settings(tmp_path, retention_days=0, db=store_target)
    write_rules(
        Path(settings.rules),
        """
        - id: logged
          trigger: memory
          do: [{log: {message: "{{ memory.id }}"}}]
        - id: never-sent
          trigger: day_summary
          do: [{http: {url: "http://127.0.0.1:9/x"}}]
        """,
    )
    with LiveServer(settings) as server:
        for n in range(3):
            httpx.post(f"{server.url}/webhook/memory?uid=u", json={"id": f"old-{n}"})
        httpx.post(
            f"{server.url}/webhook/memory?uid=u",
            content=b"{",
            headers={"Content-Type": "application/json"},
        )

        def delivered() -> bool:
            actions = httpx.get(server.url + "/api/actions", headers=ADMIN).json()
            return len([a for a in actions if a["status"] == "delivered"]) == 3

        wait_until(delivered)
    age(settings.db, 31)
    with LiveServer(settings) as server:  # a fresh event after the old ones
        httpx.post(f"{server.url}/webhook/memory?uid=u", json={"id": "new"})

    def waiting(conn: Db) -> None:  # an old action still waiting for its target
        conn.execute(
            "INSERT INTO events (id, trigger, uid, received_at, body, status) "
            "VALUES ('waiting', 'day_summary', 'u', 0, ?, 'processed')",
            [b""],
        )
        conn.execute(
            "INSERT INTO actions (idem_key, event_id, rule_id, action_index, connector, "
            "request, status, created_at, updated_at) "
            "VALUES ('k', 'waiting', 'never-sent', 0, 'http', '{}', 'pending', 0, 0)"
        )

    with_store(settings.db, waiting)
    result = CliRunner().invoke(
        main, ["prune", "--db", settings.db, "--older-than", "30d"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "deleted 3 event(s), 3 action(s), 1 rejection(s)" in result.output
    store = Store(settings.db)
    try:
        events = sorted(row["id"] for row in store.query("SELECT id FROM events"))
        actions = store.query("SELECT COUNT(*) AS n FROM actions")[0]["n"]
        rejections = store.query("SELECT COUNT(*) AS n FROM rejections")[0]["n"]
    finally:
        store.close()
    assert len(events) == 2 and "waiting" in events  # the new one, and the unsent one
    assert actions == 2 and rejections == 0


def test_the_server_sweeps_at_start(tmp_path: Path, store_target: str) -> None:
    settings = server_settings(tmp_path, retention_days=7, db=store_target)
    with LiveServer(settings) as server:
        httpx.post(f"{server.url}/webhook/memory?uid=u", json={"id": "m"})
    age(settings.db, 8)
    with LiveServer(settings) as server:
        events = wait_until(
            lambda: httpx.get(server.url + "/api/events", headers=ADMIN).json() == [] or None
        )
    assert events is True
