"""Raw PCM16 audio: no text, and history shows only its size; rules see its level, clipping
and voice activity (engine.runtime.audio_features)."""

from __future__ import annotations

from engine.runtime.payloads import decode_audio
from engine.triggers import MiB, Trigger

audio = Trigger(
    name="audio",
    endpoint="/webhook/audio",
    summary="Raw PCM16 little-endian mono audio (query sample_rate)",
    content="audio",
    decode=lambda body, uid, query: decode_audio(
        body,
        uid,
        query.get("sample_rate"),
        query.get("session_duration_s"),
        str(query.get("session_id") or ""),
        query.get("speaking"),  # stored params of a replayed chunk (not a webhook's query)
    ),
    template_names=frozenset({"audio"}),
    aliases=lambda view: {"audio": view.doc},
    has_text=False,
    body_limit=12 * MiB,  # 30 s at 192 kHz, 16-bit mono is 11 MiB
    display=lambda body: {"bytes": len(body)},
)
