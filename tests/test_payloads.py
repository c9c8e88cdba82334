"""Decoding Omi's webhook bodies: lenient about shape, strict about what the engine needs,
and never anything but a one-line PayloadError for a bad body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import PayloadError
from engine.runtime.payloads import (
    MAX_LEGACY_SUMMARY_CHARS,
    decode_event,
    parse_legacy_summary,
)
from tests.conftest import fixture_path


def decode_fixture(trigger: str, name: str, **params: Any):  # an Event
    return decode_event(trigger, fixture_path(name).read_bytes(), uid="user123", **params)


# -- memory ---------------------------------------------------------------------------------


def test_docs_spelling_gets_the_backend_spelling_too() -> None:
    doc = decode_fixture("memory", "memory-work.json").doc
    for segment in doc["transcript_segments"]:
        assert segment["speaker_id"] == segment["speakerId"]
    assert doc["transcript_segments"][1]["speaker_id"] == 1
    assert doc["apps_results"] == doc["apps_response"] == []


def test_backend_spelling_gets_the_docs_spelling_too() -> None:
    evt = decode_fixture("memory", "memory-backend-shape.json")
    doc = evt.doc
    assert [s["speakerId"] for s in doc["transcript_segments"]] == [0, 1]
    assert doc["apps_response"] == doc["apps_results"] == []
    assert (evt.trigger, evt.uid, evt.id) == ("memory", "user123", "sample-conv-0042")


def test_apps_response_is_copied_when_only_it_is_given() -> None:
    doc = decode_fixture("memory", "memory-extra-fields.json").doc
    assert doc["apps_results"] == [{"app_id": "todo-digest", "content": "Two chores."}]


def test_unknown_fields_are_kept() -> None:
    doc = decode_fixture("memory", "memory-extra-fields.json").doc
    assert doc["geolocation"]["address"] == "Berlin, Germany"
    assert doc["source"] == "omi"
    backend = decode_fixture("memory", "memory-backend-shape.json").doc
    assert backend["plugins_results"] == []
    assert backend["status"] == "completed"
    assert backend["structured"]["action_items"][0]["due_at"] is None


def test_missing_optional_fields_are_fine() -> None:
    evt = decode_event("memory", b"{}", uid="u")
    assert (evt.doc, evt.id) == ({}, "")
    evt = decode_event("memory", b'{"structured": null, "transcript_segments": null}', uid="u")
    assert evt.doc["structured"] is None


@pytest.mark.parametrize(
    ("trigger", "body", "reason"),
    [
        ("memory", b"not json", "not JSON (JSON is malformed: invalid character (byte 4))"),
        ("memory", b'{"a": 1}{', "not JSON (JSON is malformed: trailing characters (byte 9))"),
        ("memory", b"   ", "empty body, expected JSON"),
        ("memory", b"[]", "expected a JSON object, got list"),
        ("memory", b"42", "expected a JSON object, got int"),
        (
            "memory",
            b'{"structured": {"title": 5}}',
            "Expected 'str | null', got 'int' - at '$.structured.title'",
        ),
        (
            "memory",
            b'{"transcript_segments": [{"speaker_id": 1.5}]}',
            "Expected 'int | str | null', got 'float' - at '$.transcript_segments[0].speaker_id'",
        ),
        (
            "memory",
            b'{"transcript_segments": {}}',
            "Expected 'array | null', got 'object' - at '$.transcript_segments'",
        ),
        (
            "transcript",
            b'"x"',
            "expected a list of segments or an object with 'segments', got str",
        ),
        ("transcript", b'{"session_id": "u"}', "missing 'segments'"),
        (
            "transcript",
            b'[{"text": 1}]',
            "Expected 'str | null', got 'int' - at '$.segments[0].text'",
        ),
        ("transcript", b"[1]", "Expected 'object', got 'int' - at '$.segments[0]'"),
        ("day_summary", b"[]", "expected a JSON object, got list"),
        ("day_summary", b"{}", "neither 'summary_json' nor 'summary' given"),
        (
            "day_summary",
            b'{"summary_json": "x"}',
            "Expected 'object | null', got 'str' - at '$.summary_json'",
        ),
    ],
)
def test_bad_bodies_get_a_one_line_reason(trigger: str, body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_event(trigger, body, uid="u")
    error = caught.value
    assert (error.reason, error.trigger, error.status) == (reason, trigger, 400)
    assert str(error) == f"{trigger} payload: {reason}"


def test_unknown_trigger() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_event("photo", b"{}", uid="u")
    assert str(caught.value) == "unknown trigger 'photo'"


# -- transcript -----------------------------------------------------------------------------


def test_bare_list_and_backend_object_decode_alike() -> None:
    bare = decode_fixture("transcript", "transcript-call-1.json")
    shaped = decode_fixture("transcript", "transcript-app-shape.json")
    assert bare.doc["segments"] == shaped.doc["segments"]
    assert bare.session_id == shaped.session_id == "user123"
    assert bare.doc["session_id"] == "user123"
    assert all(s["speaker_id"] == s["speakerId"] for s in bare.doc["segments"])


def test_session_id_comes_from_the_query_then_the_body_then_the_uid() -> None:
    body = json.dumps({"segments": [], "session_id": "from-body"}).encode()
    assert decode_event("transcript", body, uid="u", session_id="q").session_id == "q"
    assert decode_event("transcript", body, uid="u").session_id == "from-body"
    assert decode_event("transcript", b"[]", uid="u").session_id == "u"


# -- day summary ----------------------------------------------------------------------------


def test_legacy_summary_is_parsed_into_summary_json() -> None:
    legacy = decode_fixture("day_summary", "day-summary-legacy.json")
    modern = decode_fixture("day_summary", "day-summary.json")
    assert legacy.doc["summary_json"] == modern.doc["summary_json"]
    assert legacy.doc["summary_json"]["headline"] == "Steady day of reviews and errands"
    assert legacy.doc["summary_json"]["action_items"][0]["completed"] is False
    assert legacy.id == "7b1e2f90-3c4d-4a5b-9e6f-0a1b2c3d4e5f"


def test_summary_given_as_an_object_or_as_plain_text() -> None:
    as_object = decode_event("day_summary", b'{"summary": {"headline": "H"}}', uid="u")
    assert as_object.doc["summary_json"] == {"headline": "H"}
    as_text = decode_event("day_summary", b'{"summary": "A calm day."}', uid="u")
    assert as_text.doc["summary_json"] == {"overview": "A calm day."}


def test_legacy_summary_is_never_evaluated() -> None:
    assert parse_legacy_summary("__import__('os').system('echo pwned')") is None
    assert parse_legacy_summary("{'a': (1).__class__}") is None
    assert parse_legacy_summary("[1, 2]") is None
    assert parse_legacy_summary("{" * 10_000) is None
    assert parse_legacy_summary("{'a': [1, {'b': None}]}") == {"a": [1, {"b": None}]}


# -- audio ----------------------------------------------------------------------------------


def test_speech_and_silence_fixtures() -> None:
    speech = decode_fixture("audio", "audio-speech-16k.pcm", sample_rate="16000")
    assert speech.doc["sample_rate"] == 16000
    assert speech.doc["bytes"] == 132970
    assert speech.doc["duration"] == 4.155
    assert speech.doc["silent"] is False
    assert speech.audio == fixture_path("audio-speech-16k.pcm").read_bytes()
    silence = decode_fixture("audio", "audio-silence-16k.pcm", sample_rate=16000)
    assert (silence.doc["duration"], silence.doc["peak"], silence.doc["silent"]) == (2.0, 1, True)


def test_audio_features_reach_the_document() -> None:
    speech = decode_fixture("audio", "audio-speech-16k.pcm", sample_rate="16000")
    doc = speech.doc
    assert (doc["duration_s"], doc["samples"], doc["clipped"]) == (4.155312, 66485, 0.0)
    assert doc["speech_ratio"] > 0.6
    assert doc["peak_dbfs"] < 0 and doc["rms_dbfs"] < doc["peak_dbfs"]
    assert doc["session_duration_s"] == doc["duration_s"]  # no stream: the chunk alone
    assert len(speech.voiced) == 138  # 30 ms frames
    replayed = decode_fixture(
        "audio", "audio-speech-16k.pcm", sample_rate=16000, session_duration_s=12.5
    )
    assert replayed.doc["session_duration_s"] == 12.5


def test_audio_without_a_sample_rate_is_refused_not_guessed() -> None:
    with pytest.raises(PayloadError) as caught:
        decode_event("audio", b"\x00\x00" * 8000, uid="u")
    assert caught.value.reason == (
        "missing sample_rate query parameter (Omi sends it; 8000 or 16000)"
    )


@pytest.mark.parametrize(
    ("body", "rate", "reason"),
    [
        (b"\x00" * 3, 16000, "odd byte count (3): not PCM16 (2 bytes a sample)"),
        (b"", 16000, "empty body: no audio"),
        (b"\x00" * 4, "abc", "sample_rate 'abc' is not a number"),
        (b"\x00" * 4, 999, "sample_rate 999 outside 1000..192000"),
        (b"\x00" * 4, 192001, "sample_rate 192001 outside 1000..192000"),
    ],
)
def test_bad_audio(body: bytes, rate: Any, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_event("audio", body, uid="u", sample_rate=rate)
    assert (caught.value.reason, caught.value.status) == (reason, 400)


# -- properties -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# bodies shaped like each trigger's, with anything in the known fields
SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON,
        "transcript_segments": st.lists(
            st.dictionaries(
                st.sampled_from(["text", "speaker_id", "speakerId", "is_user", "start"]), JSON
            ),
            max_size=3,
        )
        | JSON,
        "structured": st.fixed_dictionaries({}, optional={"title": JSON, "action_items": JSON})
        | JSON,
        "segments": st.lists(
            st.dictionaries(st.sampled_from(["text", "speakerId", "end"]), JSON), max_size=3
        )
        | JSON,
        "session_id": JSON,
        "summary": st.text(alphabet="{}[]()'\":, 01abc", max_size=30) | JSON,
        "summary_json": JSON,
        "apps_results": JSON,
    },
)
TRIGGERS = st.sampled_from(["memory", "transcript", "day_summary", "audio"])


def _decodes_or_refuses(trigger: str, body: bytes) -> None:
    try:
        evt = decode_event(trigger, body, uid="u", sample_rate=16000)
    except PayloadError as error:
        assert "\n" not in str(error)
        assert 400 <= error.status < 500
    else:
        assert evt.trigger == trigger
        assert isinstance(evt.doc, dict)


@settings(deadline=None, database=None, max_examples=300)
@given(trigger=TRIGGERS, value=JSON | SHAPED)
def test_any_json_decodes_or_is_refused_with_a_payload_error(trigger: str, value: Any) -> None:
    _decodes_or_refuses(trigger, json.dumps(value).encode())


@settings(deadline=None, database=None)
@given(trigger=TRIGGERS, body=st.binary(max_size=64))
def test_any_bytes_decode_or_are_refused_with_a_payload_error(trigger: str, body: bytes) -> None:
    _decodes_or_refuses(trigger, body)


KNOWN_MEMORY_FIELDS = {
    "id",
    "created_at",
    "started_at",
    "finished_at",
    "transcript_segments",
    "structured",
    "discarded",
    "apps_response",
    "apps_results",
}


@settings(deadline=None, database=None)
@given(
    extra=st.dictionaries(
        st.text(max_size=10).filter(lambda k: k not in KNOWN_MEMORY_FIELDS), JSON, max_size=5
    )
)
def test_unknown_memory_fields_round_trip_unchanged(extra: dict[str, Any]) -> None:
    body = {**json.loads(fixture_path("memory-work.json").read_text()), **extra}
    doc = decode_event("memory", json.dumps(body).encode(), uid="u").doc
    for key, value in extra.items():
        assert doc[key] == value
    assert doc["structured"] == body["structured"]


def test_a_long_legacy_summary_is_plain_text_not_parsed() -> None:
    literal = "{'headline': 'H', 'pad': '" + "a" * MAX_LEGACY_SUMMARY_CHARS + "'}"
    assert parse_legacy_summary(literal) is None
    assert parse_legacy_summary(literal[-100:].replace("a" * 80, "")) is None  # not a dict
    assert parse_legacy_summary("{'headline': 'H'}") == {"headline": "H"}
    body = json.dumps({"summary": literal}).encode()
    doc = decode_event("day_summary", body, uid="u").doc
    assert doc["summary_json"] == {"overview": literal}
