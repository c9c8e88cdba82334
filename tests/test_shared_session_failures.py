"""Two receivers on one PostgreSQL database, driven through Receiver.receive (no HTTP):
the review's scenarios where one receiver's memory (only a cache of a shared store) acted
on a session another receiver was hearing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg

from engine.server.receipt import Incoming
from engine.server.receiver import Receiver
from tests.server_helpers import server_settings, write_rules

RULES = """
- id: ends
  trigger: transcript_session_end
  do: [{log: {path: e.jsonl, message: "{{ session.id }}"}}]
- id: hello
  trigger: transcript
  once_per_session: true
  when:
    - keywords: ["hello"]
  do: [{log: {path: h.jsonl, message: "x"}}]
- id: mem
  trigger: memory
  do: [{log: {path: m.jsonl, message: "x"}}]
"""


def call(text: str, start: float, *, uid: str = "u", key: str | None = None) -> Incoming:
    body = json.dumps([{"text": text, "start": start, "end": start + 1, "is_user": True}])
    headers = {"x-omi-idempotency-key": key} if key else {}
    return Incoming(
        "transcript", body.encode(), {"uid": uid, "session_id": "s"}, headers, "application/json"
    )


def memory(n: int) -> Incoming:
    body = json.dumps({"id": f"m{n}", "structured": {"title": "t"}, "transcript_segments": []})
    return Incoming("memory", body.encode(), {"uid": "other"}, {}, "application/json")


@asynccontextmanager
async def two(
    tmp_path: Path, url: str, **settings: Any
) -> AsyncIterator[tuple[Receiver, Receiver]]:
    write_rules(tmp_path / "rules", RULES)
    a = Receiver(server_settings(tmp_path, db=url, **settings))
    b = Receiver(server_settings(tmp_path, db=url, **settings))
    for receiver in (a, b):
        await receiver.start()
        for task in receiver._tasks:  # the session-end checks run when the test says
            if task.get_name() == "session-end":
                task.cancel()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def rows(receiver: Receiver, sql: str) -> list[dict[str, Any]]:
    return await receiver.store.read(lambda store: store.query(sql))


def test_a_stale_copy_in_memory_never_ends_a_session_live_elsewhere(
    tmp_path: Path, postgres_url: str
) -> None:
    """a heard the session's first call; b hears the rest. a's copy looks idle: neither
    its pipeline's periodic sweep nor its session-end check may end the session."""

    async def run() -> None:
        async with two(tmp_path, postgres_url, session_idle=2.0) as (a, b):
            assert (await a.receive(call("hello one", 0))).status == 200
            for i in range(1, 3):  # the session goes on at b, 1.2 s apart (idle is 2 s)
                await asyncio.sleep(1.2)
                assert (await b.receive(call(f"more words {i}", i * 2))).status == 200
            a.pipeline._next_sweep = 0  # a's periodic sweep falls due at its next event
            assert (await a.receive(memory(1))).status == 200
            assert await a.end_sessions() == 0
            assert (await b.receive(call("still talking", 6))).status == 200
            ends = await rows(a, "SELECT id FROM events WHERE trigger = 'transcript_session_end'")
            assert ends == []
            live = await rows(a, "SELECT calls, ended_by FROM live_sessions")
            assert live == [{"calls": 4, "ended_by": None}]

    asyncio.run(run())


def test_memory_making_room_leaves_a_shared_session_in_the_store(
    tmp_path: Path, postgres_url: str
) -> None:
    """a's memory holds two sessions at most: making room for others must not delete u1's
    session from the store while b hears it (once_per_session would fire again)."""

    async def run() -> None:
        async with two(tmp_path, postgres_url, session_max_total=2) as (a, b):
            assert (await a.receive(call("hello there", 0, uid="u1"))).status == 200
            assert (await b.receive(call("more words", 2, uid="u1"))).status == 200
            assert (await a.receive(call("words", 0, uid="u2"))).status == 200
            assert (await a.receive(call("words", 0, uid="u3"))).status == 200
            assert (await b.receive(call("hello again", 4, uid="u1"))).status == 200
            fired = await rows(
                a,
                "SELECT COUNT(*) AS n FROM actions WHERE rule_id = 'hello' AND event_id IN "
                "(SELECT id FROM events WHERE uid = 'u1')",
            )
            assert fired[0]["n"] == 1
            live = await rows(a, "SELECT calls FROM live_sessions WHERE uid = 'u1'")
            assert [row["calls"] for row in live] == [3]

    asyncio.run(run())


def test_omis_retry_at_the_other_receiver_does_not_end_the_session(
    tmp_path: Path, postgres_url: str
) -> None:
    """The retry of a 40 s call, decided again at b, reads as a new conversation there
    (its start is long before the session's last end); the store says it is a repeat and
    its write rolls back: the end it queued must go with it."""

    async def run() -> None:
        async with two(tmp_path, postgres_url) as (a, b):
            segments = [
                {"text": f"words {i}", "start": i * 20, "end": i * 20 + 1, "is_user": True}
                for i in range(3)
            ]
            body = json.dumps(segments).encode()
            query, headers = {"uid": "u", "session_id": "s"}, {"x-omi-idempotency-key": "k1"}
            first = Incoming("transcript", body, query, headers, "application/json")
            assert (await a.receive(first)).status == 200
            retry = Incoming("transcript", body, query, headers, "application/json")
            assert (await b.receive(retry)).status == 200
            await b.end_sessions()
            ends = await rows(a, "SELECT id FROM events WHERE trigger = 'transcript_session_end'")
            assert ends == []
            assert len(await rows(a, "SELECT number FROM live_sessions")) == 1

    asyncio.run(run())


FAILING_ENDS = """
CREATE FUNCTION no_ends() RETURNS trigger AS $$ BEGIN
  IF NEW.trigger = 'transcript_session_end' AND NEW.uid <> 'u8' THEN RAISE EXCEPTION 'blip'; END IF;
  RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER no_ends BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION no_ends();
"""


def test_end_events_that_failed_to_write_end_again_and_starve_no_other(
    tmp_path: Path, postgres_url: str
) -> None:
    """One receiver: the end events of the 8 sessions a sweep holds fail to write once (a
    database blip). Those sessions stay live in the store: they end again at a later
    sweep, and a 9th idle session is not kept from ending by them."""
    write_rules(tmp_path / "rules", RULES)

    async def run() -> tuple[int, list[str]]:
        a = Receiver(server_settings(tmp_path, db=postgres_url, session_idle=0.5))
        await a.start()
        for task in a._tasks:
            if task.get_name() == "session-end":
                task.cancel()
        try:
            for i in range(9):
                assert (await a.receive(call("words", 0, uid=f"u{i}"))).status == 200
            await asyncio.sleep(0.8)
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(FAILING_ENDS)
            await a.end_sessions()
            await asyncio.sleep(0.3)  # _write_failed runs
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute("DROP TRIGGER no_ends ON events")
            for _ in range(5):
                await asyncio.sleep(0.3)  # the last sweep's locks are let go
                await a.end_sessions()
            ends = await a.store.read(
                lambda s: s.query("SELECT uid FROM events WHERE trigger = 'transcript_session_end'")
            )
            live = await a.store.read(
                lambda s: s.query("SELECT uid FROM live_sessions ORDER BY uid")
            )
            return len(ends), [r["uid"] for r in live]
        finally:
            await a.stop()

    ended, live = asyncio.run(run())
    assert (ended, live) == (9, [])
