"""Live sessions when a write fails, is held up or a restart comes between two writes
(found in review, each scenario failed before its mend): no session ends twice, no slot
fires twice or never, no call is decided on memory the store may not keep, and no rows
outlive their session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from engine.server import receiver as receiver_module
from engine.server.receipt import Incoming
from engine.server.receiver import Receiver
from tests.server_helpers import server_settings, write_rules

RULES = """
- id: ends
  trigger: transcript_session_end
  do: [{log: {path: e.jsonl, message: "{{ session.id }}"}}]
- id: slot
  trigger: transcript
  when:
    - keywords: ["remind me to {task}"]
      slot_wait: 1s
  do: [{log: {path: s.jsonl, message: "{{ match.slots.task }}"}}]
- id: coach
  trigger: transcript
  when:
    - keywords: ["basically"]
  do: [{log: {path: c.jsonl, message: "x"}}]
"""
BROKEN = (
    "CREATE TRIGGER broken BEFORE INSERT ON {table} {when} "
    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
)


def seg(text: str, start: float) -> dict[str, Any]:
    return {"text": text, "start": start, "end": start + 1, "is_user": True}


def call(*segments: dict[str, Any], session: str = "s") -> Incoming:
    body = json.dumps(list(segments)).encode()
    return Incoming("transcript", body, {"uid": "u", "session_id": session}, {}, "application/json")


class Broken:
    """SQLite refusing inserts into `table` (as a full disk would) while in use."""

    def __init__(self, db: str, table: str, when: str = "") -> None:
        self.db, self.sql = db, BROKEN.format(table=table, when=when)

    def __enter__(self) -> None:
        self.conn = sqlite3.connect(self.db, isolation_level=None)
        self.conn.execute(self.sql)

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("DROP TRIGGER broken")
        self.conn.close()


async def started(folder: Path, **settings: Any) -> Receiver:
    receiver = Receiver(server_settings(folder, **settings))
    await receiver.start()
    return receiver


async def query(receiver: Receiver, sql: str) -> list[dict[str, Any]]:
    return await receiver.store.read(lambda store: store.query(sql))


async def fired(receiver: Receiver) -> list[str]:
    return [row["rule_id"] for row in await query(receiver, "SELECT rule_id FROM actions")]


def test_a_failed_call_that_ended_a_session_does_not_end_it_twice(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULES)

    async def scenario() -> list[str]:
        receiver = await started(tmp_path)
        try:
            assert (await receiver.receive(call(seg("first conversation", 100.0)))).status == 200
            with Broken(receiver.settings.db, "events"):  # a new conversation, not written
                assert (await receiver.receive(call(seg("second one", 0.0)))).status == 503
            await receiver.end_sessions()
            assert (await receiver.receive(call(seg("second one", 0.0)))).status == 200
            await receiver.end_sessions()
            rows = await query(
                receiver, "SELECT body FROM events WHERE trigger = 'transcript_session_end'"
            )
            return [json.loads(row["body"])["text"] for row in rows]
        finally:
            await receiver.stop()

    assert asyncio.run(scenario()) == ["first conversation"]


def test_a_call_held_up_behind_its_sessions_previous_write_is_not_decided_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receiver_module, "SESSION_WRITE_WAIT", 0.05)
    write_rules(tmp_path / "rules", RULES)

    async def scenario() -> tuple[list[str], list[str], int]:
        receiver = await started(tmp_path)
        try:
            first, second = call(seg("basically alpha", 0.0)), call(seg("bravo", 1.0))
            when = "WHEN CAST(NEW.segment AS TEXT) LIKE '%basically%'"
            with Broken(receiver.settings.db, "live_segments", when):
                receiver.store.submit(lambda db: time.sleep(0.5))  # a slow write ahead
                one = asyncio.create_task(receiver.receive(first))
                await asyncio.sleep(0.05)
                two = asyncio.create_task(receiver.receive(second))  # held up: 503
                await asyncio.sleep(0.2)
                retry = asyncio.create_task(receiver.receive(second))
                statuses = [(await one).status, (await two).status, (await retry).status]
            assert statuses[:2] == [503, 503]
            assert (await receiver.receive(first)).status == 200  # Omi sends it again
            kept = await query(receiver, "SELECT segment FROM live_segments")
            texts = [json.loads(row["segment"])["text"] for row in kept]
            return await fired(receiver), texts, statuses[2]
        finally:
            await receiver.stop()

    rules, texts, retried = asyncio.run(scenario())
    assert rules == ["coach"]  # the resent call was new
    # the store holds a call's segments exactly when the call was acknowledged
    assert sorted(texts) == (
        ["basically alpha", "bravo"] if retried == 200 else ["basically alpha"]
    )


def test_a_closing_that_could_not_be_queued_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receiver_module, "SESSION_WRITE_WAIT", 0.05)
    write_rules(tmp_path / "rules", RULES)

    async def scenario() -> list[str]:
        receiver = await started(tmp_path, session_idle=3)
        for task in receiver._tasks:  # the checks are driven by hand
            task.cancel()
        receiver._tasks.clear()
        try:
            said = call(seg("remind me to water the plants", 0.0))
            assert (await receiver.receive(said)).status == 200
            await asyncio.sleep(1.1)
            receiver.store.submit(lambda db: time.sleep(0.5))  # a slow write ahead
            resend = asyncio.create_task(receiver.receive(said))
            await asyncio.sleep(0.05)
            await receiver.end_sessions()  # the closing cannot wait for the session: tried later
            assert (await resend).status == 200
            for _ in range(5):
                await asyncio.sleep(1.0)
                await receiver.end_sessions()
            return await fired(receiver)
        finally:
            await receiver.stop()

    assert [rule for rule in asyncio.run(scenario()) if rule == "slot"] == ["slot"]


def test_a_slot_closed_as_its_session_ended_does_not_fire_again_after_a_restart(
    tmp_path: Path,
) -> None:
    write_rules(tmp_path / "rules", RULES)

    async def scenario() -> tuple[list[str], list[str], int]:
        receiver = await started(tmp_path)
        try:
            said = call(seg("remind me to water the plants", 100.0))
            assert (await receiver.receive(said)).status == 200
            assert (await receiver.receive(call(seg("hello again", 0.0)))).status == 200
            when = "WHEN NEW.trigger = 'transcript_session_end'"
            with Broken(receiver.settings.db, "events", when):
                await receiver.end_sessions()  # the closing fires; the end is not written
            before = await fired(receiver)
        finally:
            await receiver.stop()
        receiver = await started(tmp_path)
        try:
            await receiver.end_sessions()
            return before, await fired(receiver)
        finally:
            await receiver.stop()

    before, after = asyncio.run(scenario())
    assert before.count("slot") == 1
    assert after.count("slot") == 1 and after.count("ends") == 1


def test_rows_of_an_evicted_session_whose_write_failed_go_on_the_next_start(
    tmp_path: Path,
) -> None:
    write_rules(tmp_path / "rules", "[]\n")

    async def scenario() -> list[list[dict[str, Any]]]:
        receiver = await started(tmp_path, session_max_per_uid=1)
        try:
            assert (await receiver.receive(call(seg("alpha one", 0.0), session="a"))).status == 200
            with Broken(receiver.settings.db, "events"):  # evicts a, not written
                assert (await receiver.receive(call(seg("bravo", 0.0), session="b"))).status == 503
            assert (await receiver.receive(call(seg("alpha two", 5.0), session="a"))).status == 200
        finally:
            await receiver.stop()
        seen = []
        for _restart in range(2):
            receiver = await started(tmp_path, session_max_per_uid=1)
            try:
                await receiver.end_sessions()
                seen.append(await query(receiver, "SELECT session_id FROM live_sessions"))
            finally:
                await receiver.stop()
        return seen

    assert asyncio.run(scenario()) == [[{"session_id": "a"}]] * 2


def other_call(text: str) -> Incoming:
    body = json.dumps([seg(text, 0.0)]).encode()
    return Incoming("transcript", body, {"uid": "v", "session_id": "x"}, {}, "application/json")


def test_an_idle_session_expired_inside_another_users_failed_call_still_ends(
    tmp_path: Path,
) -> None:
    """A sweep inside u's call expired v's idle session; u's write failed: v's end is
    still raised (only the ends of u's own session go with u's write)."""
    write_rules(tmp_path / "rules", RULES)

    async def scenario() -> list[str]:
        receiver = await started(tmp_path, session_idle=0.5)
        for task in receiver._tasks:  # the 1 s check runs when the test says
            if task.get_name() == "session-end":
                task.cancel()
        try:
            assert (await receiver.receive(other_call("idle soon"))).status == 200
            await asyncio.sleep(0.7)  # v's session is idle now
            receiver.pipeline._next_sweep = 0.0  # 60 s went by: the next call sweeps
            with Broken(receiver.settings.db, "events"):
                assert (await receiver.receive(call(seg("u talks", 0.0)))).status == 503
            for _ in range(3):
                await receiver.end_sessions()
            rows = await query(
                receiver, "SELECT body FROM events WHERE trigger = 'transcript_session_end'"
            )
            return [json.loads(row["body"])["text"] for row in rows]
        finally:
            await receiver.stop()

    assert asyncio.run(scenario()) == ["idle soon"]


def test_a_call_failing_before_its_write_does_not_lose_the_session_it_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call starting a new conversation fails before its write is queued: the session
    it ended comes back from the store, and Omi's retry ends it (once)."""
    write_rules(tmp_path / "rules", RULES)
    real = receiver_module.write_event
    fail = {"on": False}

    def write_event(*a: Any, **k: Any) -> Any:
        if fail["on"]:
            raise OSError("sealing failed")
        return real(*a, **k)

    monkeypatch.setattr(receiver_module, "write_event", write_event)

    async def scenario() -> list[str]:
        receiver = await started(tmp_path)
        try:
            assert (await receiver.receive(call(seg("first conversation", 100.0)))).status == 200
            fail["on"] = True
            with contextlib.suppress(OSError):
                await receiver.receive(call(seg("second one", 0.0)))
            fail["on"] = False
            await receiver.end_sessions()
            assert (await receiver.receive(call(seg("second one", 0.0)))).status == 200
            await receiver.end_sessions()
            rows = await query(
                receiver, "SELECT body FROM events WHERE trigger = 'transcript_session_end'"
            )
            return [json.loads(row["body"])["text"] for row in rows]
        finally:
            await receiver.stop()

    assert asyncio.run(scenario()) == ["first conversation"]
