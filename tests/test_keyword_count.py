"""`count:` on keywords conditions (engine.rules.keyword_count): fire on the Nth mention in
a session, within a window, counted from the session's segments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.rules.keyword_count import KeywordCount, Mention
from engine.rules.keywords import KeywordHit
from engine.runtime.pipeline import Pipeline
from engine.server.app import create_app
from tests.helpers import decision, event, load_errors, load_ok, pipeline
from tests.server_helpers import admin_client, server_settings, write_rules

COACH = """\
- id: coach
  trigger: transcript
  when:
    - keywords: ["basically", "you know"]
      speaker: user
      count: {at_least: 3, within: 10m}
  do: [{log: {}}]
"""

WHOLE_SESSION = """\
- id: coach
  trigger: transcript
  when:
    - keywords: basically
      count: {at_least: 2}
  do: [{log: {}}]
"""


def said(text: str, start: float, *, is_user: bool = True) -> dict[str, Any]:
    return {"text": text, "is_user": is_user, "start": start, "end": start + 1}


def send(run: Pipeline, *segments: dict[str, Any], session: str = "s1") -> Any:
    body = {"session_id": session, "segments": list(segments)}
    return run.process(event("transcript", body, session=session))


def fired(run: Pipeline, *segments: dict[str, Any], session: str = "s1") -> bool:
    return decision(send(run, *segments, session=session), "coach").matched


def test_fires_on_the_third_mention_and_not_before(tmp_path: Path) -> None:
    run = pipeline(load_ok(tmp_path, COACH))
    assert not fired(run, said("So basically we ship", 0))
    outcome = send(run, said("you know, it works", 10))
    assert decision(outcome, "coach").reason == (
        'when[0]: keywords: "basically" or "you know" said 2 times within 10m, needs 3'
    )
    outcome = send(run, said("it is basically done", 20))
    assert decision(outcome, "coach").matched
    hit = decision(outcome, "coach").hit
    assert hit is not None
    assert (hit.phrase, hit.text) == ("basically", "it is basically done")


def test_after_firing_the_count_starts_again(tmp_path: Path) -> None:
    run = pipeline(load_ok(tmp_path, WHOLE_SESSION))
    results = [fired(run, said("basically", i)) for i in range(6)]
    assert results == [False, True, False, True, False, True]
    outcome = send(run, said("basically", 6))
    assert decision(outcome, "coach").reason == (
        'when[0]: keywords: "basically" said 1 time in this session'
        " since the count last fired, needs 2"
    )


def test_mentions_in_one_segment_each_count(tmp_path: Path) -> None:
    run = pipeline(load_ok(tmp_path, COACH))
    assert fired(run, said("basically, basically, you know, basically", 0))


def test_mentions_older_than_the_window_do_not_count(tmp_path: Path) -> None:
    run = pipeline(load_ok(tmp_path, COACH))
    assert not fired(run, said("basically", 0))
    assert not fired(run, said("basically", 300))
    assert not fired(run, said("basically", 601))  # 0 is 601 s before: out of the window
    assert fired(run, said("basically", 602))


def test_other_speakers_negated_mentions_and_no_new_mention_do_not_count(
    tmp_path: Path,
) -> None:
    run = pipeline(load_ok(tmp_path, COACH))
    assert not fired(run, said("basically", 0), said("basically", 1, is_user=False))
    assert not fired(run, said("it is not basically done", 2))
    outcome = send(run, said("nothing here", 3))
    assert decision(outcome, "coach").reason.startswith("when[0]: no new speech by user says")
    assert not fired(run, said("basically", 4))
    assert fired(run, said("you know", 5))


def test_a_segment_sent_again_counts_once(tmp_path: Path) -> None:
    run = pipeline(load_ok(tmp_path, COACH))
    first, second = said("basically", 0), said("basically", 1)
    assert not fired(run, first)
    assert not fired(run, first, second)
    assert not fired(run, first, second)
    assert fired(run, second, said("basically", 2))


def test_sessions_count_apart(tmp_path: Path) -> None:
    run = pipeline(load_ok(tmp_path, WHOLE_SESSION))
    assert not fired(run, said("basically", 0), session="a")
    assert not fired(run, said("basically", 0), session="b")
    assert fired(run, said("basically", 1), session="a")


def test_the_tally_runs_reset_and_untimed_mentions_stay_in_the_window() -> None:
    hit = KeywordHit("x", "x", "SPEAKER_00")
    count = KeywordCount(3, 10.0, "10s")
    found = [Mention(i, at, hit) for i, at in enumerate([0.0, None, 20.0, 21.0, 22.0, 23.0])]
    tally = count.tally(found)
    assert [m.segment for m in tally.fired] == [3]  # None and 20, 21 (0 left the window)
    assert tally.run == 2


def test_count_is_a_keywords_option_only_and_needs_at_least_two(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        "- trigger: memory\n  when: [{path: $.a, count: {at_least: 2}}]\n  do: [{log: {}}]\n",
    )
    assert "'count' only goes with 'keywords:'" in str(errors[0])
    errors = load_errors(
        tmp_path,
        "- trigger: transcript\n  when: [{keywords: x, count: {at_least: 1}}]\n  do: [{log: {}}]\n",
    )
    assert "at_least" in str(errors[0]) and ">= 2" in str(errors[0])
    errors = load_errors(
        tmp_path,
        "- trigger: transcript\n  when: [{keywords: x, count: {at_least: 2, within: soon}}]\n"
        "  do: [{log: {}}]\n",
    )
    assert "count.within: 'soon' is not a duration" in str(errors[0])


def test_over_http_fires_on_the_third_mention_and_a_resent_call_counts_once(
    tmp_path: Path,
) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), COACH)
    calls = [
        [said("basically, we are late", 0.0)],
        [said("basically, we are late", 0.0)],  # sent again: no second mention
        [said("you know what I mean", 4.0)],
        [said("well, basically yes", 8.0)],
        [said("basically", 9.0)],
    ]
    with admin_client(create_app(settings)) as client:
        for segments in calls:
            body = {"session_id": "s9", "segments": segments}
            answer = client.post("/webhook/transcript?uid=u1&session_id=s9", json=body)
            assert answer.status_code == 200
        listed = client.get("/api/events").json()
        details = [client.get(f"/api/events/{e['id']}").json() for e in listed]
    details.sort(key=lambda d: d["id"])
    decided = [
        (d["matched"], d["reason"]) for e in details for d in e["decisions"] if d["rule"] == "coach"
    ]
    why = 'when[0]: keywords: "basically" or "you know" said {} within 10m{}, needs 3'
    assert decided == [
        (False, why.format("1 time", "")),
        (False, "no new segments (all were sent before)"),
        (False, why.format("2 times", "")),
        (True, ""),
        (False, why.format("1 time", " since the count last fired")),
    ]
