"""Omi's built-in triggers, one definition each, installed under the `omi_rules.triggers`
entry-point group exactly as a third-party trigger would be (see `engine.triggers`)."""

from __future__ import annotations

from triggers.audio import audio
from triggers.audio_speech import audio_speech_end, audio_speech_start
from triggers.day_summary import day_summary
from triggers.memory import memory
from triggers.session_end import transcript_session_end
from triggers.transcript import transcript

BUILTIN = (
    memory,
    transcript,
    audio,
    day_summary,
    transcript_session_end,
    audio_speech_start,
    audio_speech_end,
)  # in this order in messages and listings

__all__ = [
    "BUILTIN",
    "audio",
    "audio_speech_end",
    "audio_speech_start",
    "day_summary",
    "memory",
    "transcript",
    "transcript_session_end",
]
