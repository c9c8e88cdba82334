"""The conversation filters: transcript, duration, bullets."""

from __future__ import annotations

from typing import Any

import pytest

from engine.rules.filters import bullets, duration, speaker_label, transcript


@pytest.mark.parametrize(
    ("segment", "label"),
    [
        ({"speaker_name": "John", "is_user": True, "speaker_id": 3}, "John"),
        ({"is_user": True, "speaker_id": 3}, "You"),
        ({"speaker_id": 3, "speaker": "SPEAKER_03"}, "Speaker 3"),
        ({"speakerId": 0}, "Speaker 0"),
        ({"speaker": "SPEAKER_01"}, "SPEAKER_01"),
        ({}, "Speaker"),
    ],
)
def test_speaker_label(segment: dict[str, Any], label: str) -> None:
    assert speaker_label(segment) == label


SEGMENTS = [
    {"text": " Hello there. ", "speaker_name": "John", "start": 10.0, "end": 15.0},
    {"text": "Hi!", "is_user": True, "start": 15.5, "end": 19.0},
    "not a segment",
]


def test_transcript_of_segments_memory_and_session() -> None:
    expected = "John: Hello there.\nYou: Hi!"
    assert transcript(SEGMENTS) == expected
    assert transcript({"transcript_segments": SEGMENTS}) == expected
    assert transcript({"segments": SEGMENTS}) == expected
    assert transcript(None) == ""
    assert transcript({}) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0s"),
        (42, "42s"),
        (42.4, "42s"),
        (59.6, "1m"),
        (65, "1m 5s"),
        (120, "2m"),
        (3725, "1h 2m"),
        (7200, "2h 0m"),
        (SEGMENTS[:2], "9s"),
        (
            {
                "started_at": "2024-07-21T22:34:43.384323+00:00",
                "finished_at": "2024-07-21T22:35:43.384323+00:00",
            },
            "1m",
        ),
        ({"started_at": "2024-07-21T22:00:00Z", "finished_at": "2024-07-21T23:30:00Z"}, "1h 30m"),
        ({"started_at": "garbage", "transcript_segments": SEGMENTS[:2]}, "9s"),
        ({"segments": SEGMENTS[:2]}, "9s"),
        (None, ""),
        (True, ""),
        ("soon", ""),
        ([], ""),
    ],
)
def test_duration(value: Any, text: str) -> None:
    assert duration(value) == text


def test_bullets() -> None:
    assert bullets(["one", "two"]) == "- one\n- two"
    assert bullets([{"description": "a", "completed": False}, {"question": "why?"}]) == (
        "- a\n- why?"
    )
    assert bullets([{"decision": "ship"}, {"other": 1}]) == "- ship\n- "
    assert bullets([{"title": "T", "summary": "S"}], key="summary") == "- S"
    assert bullets(["x"], marker="*") == "* x"
    assert bullets(None) == ""
