"""Live transcript sessions: the session so far, new segments only, conversations split
by quiet gaps or restarting times, and cooldown / once_per_session, all on explicit clocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from engine.runtime.limits import SessionLimits
from engine.runtime.sessions import (
    DEFAULT_IDLE_SECONDS,
    MAX_SEGMENTS,
    FiringGate,
    SessionStore,
    segment_key,
)
from tests.helpers import decision, event, load_ok, pipeline
from tests.server_helpers import LiveServer, server_settings, write_rules


def seg(text: str, start: float, end: float, *, user: bool = True, **extra: Any) -> dict[str, Any]:
    return {"text": text, "start": start, "end": end, "is_user": user, **extra}


# -- SessionStore -----------------------------------------------------------------------------


def test_observe_appends_only_new_segments() -> None:
    store = SessionStore()
    first = store.observe("u", "s", [seg("a", 0, 1), seg("b", 1, 2)], now=0.0)
    assert (first.first_new, first.has_new, first.session.key) == (0, True, "s#1")
    again = store.observe("u", "s", [seg("b", 1, 2), seg("c", 2, 3)], now=1.0)
    assert [s["text"] for s in again.session.segments] == ["a", "b", "c"]
    assert again.first_new == 2
    repeat = store.observe("u", "s", [seg("c", 2, 3)], now=2.0)
    assert repeat.has_new is False


def test_segment_identity_is_the_id_or_times_and_text() -> None:
    assert segment_key({"id": "x", "text": "a"}) == ("id", "x")
    assert segment_key(seg(" a ", 1.001, 2.0)) == segment_key(seg("a", 1.0, 2.004))
    assert segment_key(seg("a", 1, 2)) != segment_key(seg("b", 1, 2))


def test_sessions_are_per_user_and_session_id() -> None:
    store = SessionStore()
    store.observe("u", "s", [seg("a", 0, 1)], now=0.0)
    other_user = store.observe("v", "s", [seg("a", 0, 1)], now=0.0)
    other_session = store.observe("u", "t", [seg("a", 0, 1)], now=0.0)
    assert other_user.has_new and other_session.has_new


def test_a_quiet_period_starts_a_new_conversation() -> None:
    store = SessionStore(idle_seconds=60)
    store.observe("u", "u", [seg("a", 0, 1)], now=0.0)
    same = store.observe("u", "u", [seg("b", 1, 2)], now=60.0)
    assert same.session.key == "u#1"
    later = store.observe("u", "u", [seg("a", 0, 1)], now=121.0)
    assert later.session.key == "u#2"
    assert [s["text"] for s in later.session.segments] == ["a"]
    assert later.has_new  # the same text in a new conversation is new


def test_times_starting_again_near_zero_start_a_new_conversation() -> None:
    store = SessionStore()
    store.observe("u", "u", [seg("a", 100, 110)], now=0.0)
    still = store.observe("u", "u", [seg("b", 85, 90)], now=1.0)  # within the 30 s gap
    assert still.session.key == "u#1"
    restarted = store.observe("u", "u", [seg("c", 0.5, 2)], now=2.0)
    assert restarted.session.key == "u#2"


def test_old_segments_drop_off_the_front() -> None:
    store = SessionStore()
    store.observe("u", "s", [seg(str(i), i, i + 1) for i in range(MAX_SEGMENTS)], now=0.0)
    latest = store.observe("u", "s", [seg("new", 9999, 10000)], now=1.0)
    assert len(latest.session.segments) == MAX_SEGMENTS
    assert latest.session.segments[0]["text"] == "1"
    assert latest.session.segments[latest.first_new]["text"] == "new"


def test_expire_forgets_quiet_sessions() -> None:
    store = SessionStore()
    store.observe("u", "a", [seg("x", 0, 1)], now=0.0)
    store.observe("u", "b", [seg("x", 0, 1)], now=100.0)
    assert store.expire(now=DEFAULT_IDLE_SECONDS + 50) == 1
    assert store.observe("u", "b", [seg("x", 0, 1)], now=200.0).has_new is False
    assert store.observe("u", "a", [seg("x", 0, 1)], now=200.0).has_new is True


def test_non_mapping_segments_are_ignored() -> None:
    observation = SessionStore().observe("u", "s", ["junk", seg("a", 0, 1)], now=0.0)
    assert [s["text"] for s in observation.session.segments] == ["a"]


# -- FiringGate -------------------------------------------------------------------------------


def test_gate_cooldown_and_once() -> None:
    gate = FiringGate()
    assert gate.refusal("r", "u", "s#1", once=True, cooldown=None, now=0.0) is None
    gate.fired("r", "u", "s#1", now=0.0)
    assert gate.refusal("r", "u", "s#1", once=True, cooldown=None, now=999.0) == (
        "already fired in this session (once_per_session)"
    )
    assert gate.refusal("r", "u", "s#1", once=False, cooldown=30.0, now=10.0) == (
        "cooling down (20s of 30s left)"
    )
    assert gate.refusal("r", "u", "s#1", once=False, cooldown=30.0, now=30.0) is None
    assert gate.refusal("r", "u", "s#2", once=True, cooldown=30.0, now=1.0) is None
    assert gate.refusal("r", "v", "s#1", once=True, cooldown=30.0, now=1.0) is None
    assert gate.refusal("q", "u", "s#1", once=True, cooldown=30.0, now=1.0) is None


# -- through the pipeline -----------------------------------------------------------------------

RULES = """
- id: cool
  trigger: transcript
  cooldown: 30s
  when:
    - keywords: [lights on]
  do: [{log: {}}]
- id: once
  trigger: transcript
  once_per_session: true
  when:
    - keywords: [remind me]
  do: [{log: {}}]
- id: memory-cool
  trigger: memory
  cooldown: 1m
  do: [{log: {}}]
"""


def fired(outcome: Any) -> set[str]:
    return {d.rule.id for d in outcome.matched}


def test_cooldown_per_rule_user_and_session(tmp_path: Path) -> None:
    runner = pipeline(load_ok(tmp_path, RULES))

    def say(text: str, at: float, *, uid: str = "u", session: str = "s") -> Any:
        return runner.process(
            event("transcript", [seg(text, at, at + 1)], uid=uid, session=session), now=at
        )

    assert fired(say("lights on", 0)) == {"cool"}
    blocked = say("lights on", 10)
    assert decision(blocked, "cool").reason == "cooling down (20s of 30s left)"
    assert fired(say("lights on", 11, uid="v")) == {"cool"}  # another user
    assert fired(say("lights on", 12, session="other")) == {"cool"}  # another session
    assert fired(say("lights on", 29.5)) == set()
    assert fired(say("lights on", 30)) == {"cool"}


def test_a_refused_firing_does_not_restart_the_cooldown(tmp_path: Path) -> None:
    runner = pipeline(load_ok(tmp_path, RULES))
    for at, expected in [(0, {"cool"}), (20, set()), (31, {"cool"})]:
        outcome = runner.process(event("transcript", [seg("lights on", at, at + 1)]), now=at)
        assert fired(outcome) == expected


def test_once_per_session(tmp_path: Path) -> None:
    runner = pipeline(load_ok(tmp_path, RULES))
    first = runner.process(event("transcript", [seg("remind me to call", 0, 2)]), now=0.0)
    assert fired(first) == {"once"}
    second = runner.process(event("transcript", [seg("remind me again", 3, 5)]), now=5.0)
    assert decision(second, "once").reason == "already fired in this session (once_per_session)"
    # a quiet period later it is a new conversation, and the rule may fire again
    later = DEFAULT_IDLE_SECONDS + 10
    third = runner.process(event("transcript", [seg("remind me", 0, 2)]), now=later)
    assert fired(third) == {"once"}


def test_cooldown_applies_to_memory_rules_per_user(tmp_path: Path) -> None:
    runner = pipeline(load_ok(tmp_path, RULES))
    assert fired(runner.process(event("memory", {"id": "a"}), now=0.0)) == {"memory-cool"}
    assert fired(runner.process(event("memory", {"id": "b"}), now=59.0)) == set()
    assert fired(runner.process(event("memory", {"id": "c"}, uid="v"), now=59.0)) == {"memory-cool"}
    assert fired(runner.process(event("memory", {"id": "d"}), now=60.0)) == {"memory-cool"}


def test_a_phrase_split_across_calls_fires_once(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: lights
        trigger: transcript
        when:
          - keywords: [turn on the lights]
        do: [{log: {}}]
        """,
    )
    runner = pipeline(ruleset)
    calls = [
        [seg("hey omi turn on the", 0, 1)],
        [seg("lights please", 1, 2)],
        [seg("lights please", 1, 2), seg("thanks", 2, 3)],  # one segment sent again
        [seg("thanks", 2, 3)],  # nothing new at all
    ]
    outcomes = [runner.process(event("transcript", call), now=i) for i, call in enumerate(calls)]
    assert [fired(o) for o in outcomes] == [set(), {"lights"}, set(), set()]
    assert decision(outcomes[3], "lights").reason == "no new segments (all were sent before)"


def test_idle_sessions_and_old_firings_are_forgotten() -> None:
    from engine.rules.compiled import RuleSet
    from engine.runtime.payloads import decode_event
    from engine.runtime.pipeline import FIRING_MEMORY, SWEEP_SECONDS, Pipeline
    from engine.secrets import Secrets

    pipeline = Pipeline(RuleSet(), Secrets(), dry_run=True)
    segments = b'[{"text": "hello", "start": 0, "end": 1}]'
    pipeline.process(decode_event("transcript", segments, uid="u", session_id="s"), now=1000.0)
    pipeline.gate.fired("r", "u", "s#1", 1000.0)
    assert len(pipeline.sessions._sessions) == 1
    later = 1000.0 + max(SWEEP_SECONDS, FIRING_MEMORY) + 1
    pipeline.process(decode_event("memory", b"{}", uid="u"), now=later)
    assert pipeline.sessions._sessions == {}
    assert pipeline.gate.refusal("r", "u", "s#1", once=True, cooldown=None, now=later) is None


# -- bounds (the sender picks session_id and segments) --------------------------------------


def test_sessions_per_uid_are_capped_and_the_least_recently_heard_is_evicted() -> None:
    store = SessionStore(limits=SessionLimits(per_uid=2))
    store.observe("u", "a", [seg("x", 0, 1)], now=0.0)
    store.observe("u", "b", [seg("x", 0, 1)], now=1.0)
    store.observe("u", "a", [seg("y", 1, 2)], now=2.0)  # a is heard again: b is oldest now
    third = store.observe("u", "c", [seg("x", 0, 1)], now=3.0)
    assert third.dropped == ["evicted session 'b' (over 2 per uid)"]
    assert (len(store), store.evicted) == (2, 1)
    assert store.observe("u", "a", [seg("y", 1, 2)], now=4.0).has_new is False  # a was kept
    assert store.observe("v", "b", [seg("x", 0, 1)], now=5.0).dropped == []  # other uids: own cap


def test_sessions_in_all_are_capped() -> None:
    store = SessionStore(limits=SessionLimits(total=3))
    for number in range(10):
        store.observe(f"uid{number}", "s", [seg("x", 0, 1)], now=float(number))
    assert (len(store), store.evicted) == (3, 7)


def test_one_segment_is_cut_and_only_known_fields_are_kept() -> None:
    store = SessionStore(limits=SessionLimits(segment_chars=10))
    long = seg("abcdefghijklmnop", 0, 1, speaker_name="Ann", junk="z" * 100_000)
    observation = store.observe("u", "s", [long], now=0.0)
    (kept,) = observation.session.segments
    assert kept == {
        "text": "abcdefghij",
        "speaker_name": "Ann",
        "is_user": True,
        "start": 0,
        "end": 1,
    }
    assert observation.dropped == ["1 segment(s) cut to 10 characters"]
    assert store.observe("u", "s", [long], now=1.0).has_new is False  # still recognized


def test_session_text_is_capped_in_bytes_oldest_dropped() -> None:
    limits = SessionLimits(bytes=1000, segment_chars=8192)
    store = SessionStore(limits=limits)
    for i in range(20):
        observation = store.observe("u", "s", [seg(f"{i:02d}" + "x" * 98, i, i + 1)], now=i)
    session = observation.session
    assert session.size <= 1000
    assert [s["text"][:2] for s in session.segments] == ["14", "15", "16", "17", "18", "19"]
    assert observation.dropped == [
        "1 oldest segment(s) dropped (over 2000 segments or 1000 bytes per session)"
    ]


def test_dropped_segments_are_forgotten_from_seen_but_still_recognized() -> None:
    store = SessionStore(limits=SessionLimits(segments=3, remembered_keys=5))
    for i in range(10):
        store.observe("u", "s", [seg(str(i), i, i + 1)], now=float(i))
    session = store.observe("u", "s", [], now=10.0).session
    assert [s["text"] for s in session.segments] == ["7", "8", "9"]
    assert len(session.seen) == 3 and len(session.dropped) == 5  # bounded, not 10
    assert store.observe("u", "s", [seg("6", 6, 7)], now=11.0).has_new is False  # remembered
    assert store.observe("u", "s", [seg("1", 1, 2)], now=12.0).has_new is True  # long forgotten


def test_a_phrase_split_across_calls_matches_after_a_long_session(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: lights
        trigger: transcript
        when:
          - keywords: [turn on the lights]
        do: [{log: {}}]
        """,
    )
    runner = pipeline(ruleset)
    chatter = [seg("blah " * 50, i, i + 0.5) for i in range(1500)]
    runner.process(event("transcript", chatter), now=0.0)
    runner.process(event("transcript", [seg("hey omi turn on", 1500, 1501)]), now=1.0)
    outcome = runner.process(event("transcript", [seg("the lights", 1501, 1502)]), now=2.0)
    assert fired(outcome) == {"lights"}
    assert decision(outcome, "lights").hit.text == "hey omi turn on the lights"


def test_hostile_transcript_calls_over_http_keep_sessions_bounded(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, session_max_per_uid=4)
    write_rules(
        Path(settings.rules),
        """
        - id: lights
          trigger: transcript
          when: [{keywords: [turn on the lights]}]
          do: [{log: {}}]
        """,
    )
    text = "blah " * 1900  # 9,500 characters a segment, 200 segments: a 1.9 MB call

    def hostile(call: int) -> list[dict[str, Any]]:
        return [seg(text, call * 1000 + i, call * 1000 + i + 1) for i in range(200)]

    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for call in range(4):  # one session growing, then sessions the sender makes up
            for session in ("s", f"made-up-{call}", f"made-up-{call + 10}"):
                answer = client.post(
                    "/webhook/transcript",
                    params={"uid": "u", "session_id": session},
                    json=hostile(call),
                )
                assert answer.status_code == 200
        for words, at in (("hey omi turn on the", 5000), ("lights", 5001)):
            answer = client.post(
                "/webhook/transcript",
                params={"uid": "u", "session_id": "s"},
                json=[seg(words, at, at + 1)],
            )
            assert answer.status_code == 200
        assert client.get("/health").status_code == 200
        sessions = server.receiver.pipeline.sessions
        assert len(sessions) == 4
        for session in sessions._sessions.values():
            assert session.size <= 256 * 1024
            assert len(session.seen) == len(session.segments)
            assert all(len(s["text"]) <= 8192 for s in session.segments)
        rows = server.receiver.store.query("SELECT rule_id FROM actions")
        assert [row["rule_id"] for row in rows] == ["lights"]  # the split phrase still fired


def test_a_time_sent_as_an_int_then_a_float_is_the_same_segment() -> None:
    from engine.runtime.sessions import segment_digest

    as_int = {"text": "turn on the lights", "start": 0, "end": 2}
    as_float = {"text": "turn on the lights", "start": 0.0, "end": 2.0}
    assert segment_digest(as_int) == segment_digest(as_float)


def test_only_rules_the_gate_asks_about_leave_a_firing(tmp_path: Path) -> None:
    """A firing is remembered (and stored: one row write per event) only for a rule with a
    cooldown or once_per_session; a plain rule firing on every memory of a busy user would
    rewrite one row per event, which receivers sharing a store then queue up on."""
    ruleset = load_ok(
        tmp_path,
        """
        - id: plain
          trigger: memory
          do: [{log: {}}]
        - id: cooled
          trigger: memory
          cooldown: 60s
          do: [{log: {}}]
        """,
    )
    runner = pipeline(ruleset)
    assert fired(runner.process(event("memory", {"id": "a"}), now=0.0)) == {"plain", "cooled"}
    assert runner.gate.keys() == [("cooled", "user123", "")]
