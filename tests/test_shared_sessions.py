"""Two receivers on one PostgreSQL database (engine.server.shared_sessions): calls of one
transcript session, cooldowns and session ends decided once, whichever receiver gets
them. Each receiver is a whole app on its own loopback port; they share the data folder."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.config import ConfigError
from engine.server.receiver import Receiver
from engine.server.store import Store
from tests.server_helpers import LiveServer, server_settings, write_rules
from tests.wait import wait_until

IDLE = 1.0

RULES = """
- id: lights
  trigger: transcript
  when:
    - keywords: ["turn on the lights"]
  do:
    - log: {path: lights.jsonl, message: "{{ session.id }}"}
- id: remind
  trigger: transcript
  when:
    - keywords: ["remind me to {task}"]
  do:
    - log: {path: reminders.jsonl, message: "{{ match.slots.task }}"}
- id: once-hello
  trigger: transcript
  once_per_session: true
  when:
    - keywords: ["hello"]
  do:
    - log: {path: hello.jsonl, message: "{{ session.id }}"}
- id: memory-cooldown
  trigger: memory
  cooldown: 1h
  do:
    - log: {path: cooled.jsonl, message: "{{ memory.id }}"}
- id: ended
  trigger: transcript_session_end
  do:
    - log: {path: ends.jsonl, message: "{{ session.id }}|{{ session.calls }}"}
"""


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[LiveServer, LiveServer]]:
    write_rules(tmp_path / "rules", RULES)
    servers = []
    for _name in ("a", "b"):  # one data folder: its keys, and where log lines go
        settings = server_settings(tmp_path, db=postgres_url, session_idle=IDLE)
        servers.append(LiveServer(settings).start())
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def post_call(server: LiveServer, session: str, start: float, *texts: str) -> dict[str, Any]:
    segments = [
        {
            "text": text,
            "speaker": "SPEAKER_00",
            "is_user": True,
            "start": start + i,
            "end": start + i + 0.9,
        }
        for i, text in enumerate(texts)
    ]
    answer = httpx.post(
        f"{server.url}/webhook/transcript?uid=u1&session_id={session}", json=segments
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def lines(tmp_path: Path, name: str) -> list[str]:
    """The log lines the receivers wrote (whichever delivered the action)."""
    path = tmp_path / "data" / name
    if not path.exists():
        return []
    return [json.loads(line)["message"] for line in path.read_text().splitlines()]


def drained(server: LiveServer) -> bool:
    actions = httpx.get(f"{server.url}/health").json()["actions"]
    return not actions.get("pending") and not actions.get("in_flight")


def test_a_phrase_split_over_two_receivers_fires_once(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    post_call(a, "s1", 0, "okay so turn on")
    post_call(b, "s1", 2, "the lights please")
    post_call(a, "s1", 4, "thanks, turn on the lights")  # a new mention: fires again
    wait_until(lambda: drained(a) and drained(b))
    assert len(lines(tmp_path, "lights.jsonl")) == 2
    # the session is one: both receivers' calls count in it, under one number
    with_rows = Store(a.settings.db)
    try:
        rows = with_rows.query("SELECT number, calls FROM live_sessions")
    finally:
        with_rows.close()
    assert [row["calls"] for row in rows] == [3]


def test_once_per_session_holds_across_receivers(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    for n, server in enumerate((a, b, a, b)):
        post_call(server, "s2", n * 2, f"hello number {n}")
    wait_until(lambda: drained(a) and drained(b))
    assert len(lines(tmp_path, "hello.jsonl")) == 1


def test_a_slot_opened_on_one_receiver_is_filled_on_the_other(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    post_call(a, "s3", 0, "hey, remind me to")
    post_call(b, "s3", 2, "call the dentist tomorrow. Okay.")
    wait_until(lambda: lines(tmp_path, "reminders.jsonl") != [])
    wait_until(lambda: drained(a) and drained(b))
    assert lines(tmp_path, "reminders.jsonl") == ["call the dentist tomorrow"]


def test_a_cooldown_holds_across_receivers(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    for n, server in enumerate((a, b, b, a)):
        memory = {
            "id": f"m{n}",
            "structured": {"title": "t", "overview": "o"},
            "transcript_segments": [],
        }
        answer = httpx.post(f"{server.url}/webhook/memory?uid=u9", json=memory)
        assert answer.status_code == 200, answer.text
    wait_until(lambda: drained(a) and drained(b))
    assert lines(tmp_path, "cooled.jsonl") == ["m0"]


def test_a_session_heard_by_both_receivers_ends_once(pair: Any, tmp_path: Path) -> None:
    a, b = pair
    post_call(a, "s4", 0, "first words")
    post_call(b, "s4", 2, "more words")
    post_call(a, "s4", 4, "last words")
    # both sweep every second; the session goes idle after IDLE s: one end, three calls
    wait_until(lambda: lines(tmp_path, "ends.jsonl") != [], timeout=15)
    wait_until(lambda: drained(a) and drained(b))
    ends = lines(tmp_path, "ends.jsonl")
    assert len(ends) == 1 and ends[0].endswith("|3")
    with_rows = Store(a.settings.db)
    try:
        assert with_rows.query("SELECT COUNT(*) AS n FROM live_sessions")[0]["n"] == 0
        recorded = with_rows.query(
            "SELECT COUNT(*) AS n FROM events WHERE trigger = 'transcript_session_end'"
        )
    finally:
        with_rows.close()
    assert recorded[0]["n"] == 1


def test_a_receiver_with_other_keys_refuses_to_start(tmp_path: Path, postgres_url: str) -> None:
    """A second receiver with its own data folder made its own sealing key: it could not
    open what the first sealed, so it says so at start instead."""
    write_rules(tmp_path / "rules", RULES)
    first = LiveServer(server_settings(tmp_path, db=postgres_url)).start()
    try:
        other = server_settings(tmp_path, db=postgres_url, data_dir=str(tmp_path / "elsewhere"))
        receiver = Receiver(other)
        try:
            with pytest.raises(ConfigError, match="sealing key is not the one"):
                asyncio.run(receiver.start())
        finally:
            receiver.store.close()
        # with the first one's keys copied over, it starts
        for name in ("seal.key", "settings.key"):
            (tmp_path / "elsewhere" / name).write_bytes((tmp_path / "data" / name).read_bytes())
        second = LiveServer(other).start()
        second.stop()
    finally:
        first.stop()


def test_a_users_settings_changed_on_one_receiver_are_read_by_the_other(pair: Any) -> None:
    """A user changes their destination (or disconnects) through one receiver: the other
    must not keep sending with what it read before."""
    a, b = pair
    assert a.receiver.user_settings.values("u5").values == {}
    saving = b.receiver.user_settings.save("u5", {"webhook_url": ("https://new.example/h", False)})
    asyncio.run(saving)
    assert a.receiver.user_settings.values("u5").values == {"webhook_url": "https://new.example/h"}
    asyncio.run(b.receiver.user_settings.disconnect("u5", forget_events=False))
    assert a.receiver.user_settings.values("u5").values == {}
