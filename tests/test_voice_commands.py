"""Step 9's acceptance through real HTTP: a slot phrase split over two calls with a server
restart between them fires once with the slot's words; a negated command does not fire; a
count rule fires on the third mention and not before; a session end fires once after the
idle time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.wait import wait_until

IDLE = 1.0
RULES = """
- id: remind
  trigger: transcript
  when:
    - keywords: ["remind me to {task}"]
  do:
    - log: {path: reminders.jsonl, message: "{{ match.slots.task }}"}
    - notify: {message: "Noted: {{ match.slots.task }}"}
- id: lights
  trigger: transcript
  when:
    - keywords: ["turn on the lights"]
  do:
    - log: {path: lights.jsonl, message: "{{ match.text }}"}
- id: coach
  trigger: transcript
  when:
    - keywords: ["basically"]
      count: {at_least: 3, within: 10m}
  do:
    - log: {path: coach.jsonl, message: "{{ match.phrase }}"}
- id: ended
  trigger: transcript_session_end
  do:
    - log: {path: ends.jsonl, message: "{{ session.id }}|{{ session.text }}"}
"""


def post(server: LiveServer, session: str, text: str, start: float) -> httpx.Response:
    segment = {"text": text, "speaker": "SPEAKER_00", "is_user": True}
    segment |= {"start": start, "end": start + 2}
    answer = httpx.post(
        f"{server.url}/webhook/transcript?uid=u1&session_id={session}", json=[segment]
    )
    assert answer.status_code == 200, answer.text
    return answer


def lines(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / "data" / name
    if not path.exists():
        return []
    return [json.loads(line)["message"] for line in path.read_text().splitlines()]


def decision(server: LiveServer, rule: str) -> dict[str, Any]:
    """The newest transcript event's decision for `rule`."""
    [newest, *_] = httpx.get(
        f"{server.url}/api/events", params={"trigger": "transcript"}, headers=ADMIN
    ).json()
    detail = httpx.get(f"{server.url}/api/events/{newest['id']}", headers=ADMIN).json()
    return next(d for d in detail["decisions"] if d["rule"] == rule)


def actions(server: LiveServer, rule: str) -> int:
    events = httpx.get(f"{server.url}/api/events", headers=ADMIN).json()
    count = 0
    for event in events:
        detail = httpx.get(f"{server.url}/api/events/{event['id']}", headers=ADMIN).json()
        count += sum(1 for a in detail["actions"] if a["rule_id"] == rule)
    return count


def test_a_slot_split_over_a_restart_fires_once_with_its_words(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULES)
    settings = server_settings(tmp_path, session_idle=60.0)
    with LiveServer(settings) as live:
        first = post(live, "s1", "Hey Omi, remind me to", 0.0)
        assert "message" not in first.json()
        assert "still being spoken" in decision(live, "remind")["reason"]
    with LiveServer(settings) as live:
        second = post(live, "s1", "buy oat milk tomorrow. Thanks.", 2.5)
        assert second.json()["message"] == "Noted: buy oat milk tomorrow"
        post(live, "s1", "and that was it", 5.0)
        assert wait_until(lambda: lines(tmp_path, "reminders.jsonl")) == ["buy oat milk tomorrow"]
        assert actions(live, "remind") == 2  # the log and the notify, once


def test_a_negated_command_does_not_fire_and_a_plain_one_does(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULES)
    with LiveServer(server_settings(tmp_path, session_idle=60.0)) as live:
        post(live, "s2", "Please don't turn on the lights.", 0.0)
        assert "negated" in decision(live, "lights")["reason"]
        post(live, "s2", "Actually, no need to turn on the lights either.", 3.0)
        assert actions(live, "lights") == 0
        post(live, "s2", "Okay, turn on the lights now.", 6.0)
        assert wait_until(lambda: lines(tmp_path, "lights.jsonl")) == [
            "Okay, turn on the lights now."
        ]


def test_a_count_fires_on_the_third_mention_and_not_before(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULES)
    with LiveServer(server_settings(tmp_path, session_idle=60.0)) as live:
        post(live, "s3", "So basically we ship it.", 0.0)
        post(live, "s3", "Basically, yes.", 3.0)
        assert decision(live, "coach")["reason"] == (
            'when[0]: keywords: "basically" said 2 times within 10m, needs 3'
        )
        assert actions(live, "coach") == 0
        post(live, "s3", "It is basically done.", 6.0)
        assert wait_until(lambda: lines(tmp_path, "coach.jsonl")) == ["basically"]
        post(live, "s3", "Basically.", 9.0)  # the count starts again after it fires
        assert actions(live, "coach") == 1


def test_a_session_end_fires_once_after_the_idle_time(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", RULES)
    with LiveServer(server_settings(tmp_path, session_idle=IDLE)) as live:
        post(live, "s4", "hello there", 0.0)
        post(live, "s4", "see you", 2.0)
        assert lines(tmp_path, "ends.jsonl") == []
        assert wait_until(lambda: lines(tmp_path, "ends.jsonl"), timeout=10) == [
            "s4|hello there see you"
        ]
        time.sleep(IDLE * 2.5)
        assert lines(tmp_path, "ends.jsonl") == ["s4|hello there see you"]


WAITING = """
- id: remind
  trigger: transcript
  when:
    - keywords: ["remind me to {task}"]
      slot_wait: 1s
  do:
    - log: {path: reminders.jsonl, message: "{{ match.slots.task }}"}
- id: note
  trigger: transcript
  when:
    - keywords: ["note that {what}"]
  do:
    - log: {path: notes.jsonl, message: "{{ match.slots.what }}"}
"""


def test_a_slot_left_open_fires_once_after_its_wait(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", WAITING)
    with LiveServer(server_settings(tmp_path, session_idle=60.0)) as live:
        post(live, "s5", "Hey Omi, remind me to water the", 0.0)
        assert wait_until(lambda: lines(tmp_path, "reminders.jsonl")) == ["water the"]
        closing = httpx.get(
            f"{live.url}/api/events", params={"trigger": "transcript"}, headers=ADMIN
        ).json()[0]
        detail = httpx.get(f"{live.url}/api/events/{closing['id']}", headers=ADMIN).json()
        assert detail["payload"]["segments"] == []
        time.sleep(1.5)  # more closing checks pass; the slot stays closed
        post(live, "s5", "plants.", 2.5)  # too late: it was closed by its wait
        time.sleep(0.5)
        assert lines(tmp_path, "reminders.jsonl") == ["water the"]


def test_an_open_slot_closes_when_its_session_ends(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules", WAITING)
    with LiveServer(server_settings(tmp_path, session_idle=IDLE)) as live:
        post(live, "s6", "Note that the meeting moved", 0.0)  # waits up to 10 s
        assert wait_until(lambda: lines(tmp_path, "notes.jsonl"), timeout=8) == [
            "the meeting moved"
        ]
        time.sleep(IDLE * 2.5)
        assert lines(tmp_path, "notes.jsonl") == ["the meeting moved"]
