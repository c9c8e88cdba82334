"""transcript_session_end: a live session that goes idle raises one derived event with the
whole session, recorded and acted on like a webhook, over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.runtime.payloads import decode_event
from engine.runtime.sessions import SessionStore, session_end_doc
from engine.samples import sample_bytes
from engine.server import history
from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.wait import wait_until

IDLE = 1.0

RULES = """
- id: say-goodbye
  trigger: transcript_session_end
  when:
    - keywords: ["goodbye"]
  do:
    - log:
        path: ends.jsonl
        message: "{{ session.id }}|{{ session.calls }}|{{ segments | length }}|{{ session.text }}"
- id: any-end
  trigger: transcript_session_end
  do:
    - log:
        path: all-ends.jsonl
        message: "{{ session.id }}"
"""


def post(server: LiveServer, session: str, *texts: str, start: float = 0.0) -> None:
    segments = [
        {
            "text": text,
            "speaker": "SPEAKER_00",
            "is_user": True,
            "start": start + i,
            "end": start + i + 1,
        }
        for i, text in enumerate(texts)
    ]
    answer = httpx.post(
        f"{server.url}/webhook/transcript?uid=u1&session_id={session}", json=segments
    )
    assert answer.status_code == 200, answer.text


def ends(server: LiveServer) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}/api/events", params={"trigger": "transcript_session_end"}, headers=ADMIN
    )
    return list(reversed(answer.json()))


def log_lines(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / "data" / name
    if not path.exists():
        return []
    return [json.loads(line)["message"] for line in path.read_text().splitlines()]


@pytest.fixture
def server(tmp_path: Path) -> Any:
    write_rules(tmp_path / "rules", RULES)
    with LiveServer(server_settings(tmp_path, session_idle=IDLE)) as live:
        yield live


def test_an_idle_session_ends_once_with_its_whole_text(server: LiveServer, tmp_path: Path) -> None:
    post(server, "s1", "hello there")
    post(server, "s1", "hello there", "ok goodbye")  # the first one again
    found = wait_until(lambda: ends(server), timeout=10, what="the session's end")
    time.sleep(IDLE * 2.5)  # it does not end again
    assert len(ends(server)) == 1
    event = found[0]
    assert (event["uid"], event["session_id"], event["status"]) == ("u1", "s1", "processed")
    detail = httpx.get(f"{server.url}/api/events/{event['id']}", headers=ADMIN).json()
    payload = detail["payload"]
    assert payload["text"] == "hello there ok goodbye"
    assert [s["text"] for s in payload["segments"]] == ["hello there", "ok goodbye"]
    assert payload["calls"] == 2 and payload["ended_by"] == "idle"
    assert payload["started_at"] <= payload["ended_at"] and payload["duration"] >= 0
    assert {d["rule"]: d["matched"] for d in detail["decisions"]} == {
        "say-goodbye": True,
        "any-end": True,
    }
    assert [a["rule_id"] for a in detail["actions"]] == ["say-goodbye", "any-end"]
    wait_until(lambda: log_lines(tmp_path, "ends.jsonl"), what="the log action")
    assert log_lines(tmp_path, "ends.jsonl") == ["s1|2|2|hello there ok goodbye"]


def test_a_session_that_keeps_talking_does_not_end(server: LiveServer, tmp_path: Path) -> None:
    for n in range(8):  # 2.4 s of talk, a call every 0.3 s: never idle for 1 s
        post(server, "busy", f"word {n}", start=n)
        time.sleep(0.3)
        assert ends(server) == []
    wait_until(lambda: ends(server), timeout=10, what="the end after the talk")
    [event] = ends(server)
    detail = httpx.get(f"{server.url}/api/events/{event['id']}", headers=ADMIN).json()
    assert detail["payload"]["text"] == " ".join(f"word {n}" for n in range(8))
    decisions = {d["rule"]: (d["matched"], d["reason"]) for d in detail["decisions"]}
    assert decisions["any-end"][0] is True
    assert decisions["say-goodbye"][0] is False  # computed again on read (why_not)
    assert "goodbye" in decisions["say-goodbye"][1]


def test_two_sessions_end_separately(server: LiveServer, tmp_path: Path) -> None:
    post(server, "a", "first session goodbye")
    time.sleep(IDLE * 1.5)  # b starts talking after a went quiet: a ends at least 1 s earlier
    post(server, "b", "second session")
    first = wait_until(lambda: ends(server), timeout=10, what="session a's end")
    assert [e["session_id"] for e in first] == ["a"]
    both = wait_until(lambda: len(ends(server)) == 2 and ends(server), timeout=10)
    assert [e["session_id"] for e in both] == ["a", "b"]
    wait_until(lambda: len(log_lines(tmp_path, "all-ends.jsonl")) == 2, what="both logged")
    assert sorted(log_lines(tmp_path, "all-ends.jsonl")) == ["a", "b"]
    assert log_lines(tmp_path, "ends.jsonl") == ["a|1|1|first session goodbye"]


def test_a_new_conversation_under_the_same_id_ends_the_old_one(
    server: LiveServer, tmp_path: Path
) -> None:
    post(server, "s", "old talk", start=100)
    post(server, "s", "new talk", start=0)  # times start again near zero
    found = wait_until(lambda: ends(server), timeout=10)
    detail = httpx.get(f"{server.url}/api/events/{found[0]['id']}", headers=ADMIN).json()
    assert (detail["payload"]["text"], detail["payload"]["ended_by"]) == (
        "old talk",
        "new_conversation",
    )
    both = wait_until(lambda: len(ends(server)) == 2 and ends(server), timeout=10)
    second = httpx.get(f"{server.url}/api/events/{both[1]['id']}", headers=ADMIN).json()
    assert second["payload"]["text"] == "new talk"
    # an end carries its whole session: an earlier end under the same id is not replayed
    replayed = history.session_events(server.receiver.store, both[1]["id"])
    assert [e.doc["text"] for e in replayed] == ["new talk"]


def test_the_session_document_decodes_again_as_stored() -> None:
    ended = []
    store = SessionStore(10, on_end=lambda s, why, now: ended.append((s, why)))
    store.observe("u", "s", [{"text": "one", "start": 0, "end": 1}], now=1000.0)
    store.observe("u", "s", [{"text": "two", "start": 1, "end": 2}], now=1003.0)
    store.observe("u", "empty", [], now=1003.0)
    assert store.expire(1005.0) == 0 and ended == []
    assert store.expire(1020.0) == 2
    [(session, why)] = ended  # a session with nothing said does not end
    doc = session_end_doc(session, why)
    assert doc["text"] == "one two" and doc["duration"] == 3.0 and doc["calls"] == 2
    assert doc["started_at"] == "1970-01-01T00:16:40Z"
    event = decode_event("transcript_session_end", json.dumps(doc).encode(), uid="u")
    assert (event.session_id, event.doc["text"]) == ("s", "one two")


def test_the_sample_is_a_session_end() -> None:
    event = decode_event("transcript_session_end", sample_bytes("session-end.json"), uid="u")
    assert "turn on the lights" in event.doc["text"]


def test_a_session_open_at_shutdown_goes_on_and_ends_once_after_a_restart(
    tmp_path: Path,
) -> None:
    write_rules(tmp_path / "rules", RULES)
    settings = server_settings(tmp_path, session_idle=IDLE)
    with LiveServer(settings) as live:
        post(live, "s", "cut off by a")
    with LiveServer(settings) as live:
        post(live, "s", "cut off by a", "restart", start=0.0)  # the first one sent again
        [event] = wait_until(lambda: ends(live), timeout=10)
        detail = httpx.get(f"{live.url}/api/events/{event['id']}", headers=ADMIN).json()
        assert (detail["payload"]["text"], detail["payload"]["calls"]) == (
            "cut off by a restart",
            2,
        )
        time.sleep(IDLE * 2.5)
        assert len(ends(live)) == 1


def test_a_session_idle_when_the_server_stopped_ends_after_the_restart(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULES)
    settings = server_settings(tmp_path, session_idle=IDLE)
    with LiveServer(settings) as live:
        post(live, "s", "said just before a stop")
        assert ends(live) == []
    time.sleep(IDLE * 1.5)
    with LiveServer(settings) as live:
        [event] = wait_until(lambda: ends(live), timeout=10)
        detail = httpx.get(f"{live.url}/api/events/{event['id']}", headers=ADMIN).json()
        assert detail["payload"]["text"] == "said just before a stop"
        assert wait_until(lambda: log_lines(tmp_path, "all-ends.jsonl"), timeout=10) == ["s"]
