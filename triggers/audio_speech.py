"""Someone started or stopped talking in an audio stream, raised by omi-rules itself (no
webhook) from the voice activity of the chunks (engine.runtime.audio_streams)."""

from __future__ import annotations

from engine.runtime.payloads import decode_speech
from engine.triggers import Trigger

audio_speech_start = Trigger(
    name="audio_speech_start",
    endpoint="",  # derived: raised by the receiver when speech follows silence
    summary="Speech began in an audio stream (after silence)",
    decode=lambda body, uid, query: decode_speech("audio_speech_start", body, uid),
    template_names=frozenset({"speech"}),
    aliases=lambda view: {"speech": view.doc},
    has_text=False,
)

audio_speech_end = Trigger(
    name="audio_speech_end",
    endpoint="",  # derived: raised when silence (or the utterance cap, or idleness) ends it
    summary="Speech ended in an audio stream: the utterance, kept as a WAV under data/",
    decode=lambda body, uid, query: decode_speech("audio_speech_end", body, uid),
    template_names=frozenset({"speech"}),
    aliases=lambda view: {"speech": view.doc},
    has_text=False,
)
