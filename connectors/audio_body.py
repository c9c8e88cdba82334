"""Audio an HTTP request carries: the webhook's chunk, or an utterance's WAV (see
engine.runtime.audio_streams), as the body or as a multipart file.

The stored request names where the audio is, not the audio: the chunk by its event (the
stored body, read back when the outbox sends it), the utterance by its file under the data
folder (checked again at send time). So a request delivered late, retried or replayed from
the dead letters sends the same audio, and no audio waits in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from msgspec import Struct

from engine.connector import SendEnv
from engine.paths import UTTERANCES, inside_data
from engine.wav import WAV_HEADER_BYTES, as_wav

MAX_AUDIO_BYTES = 64 * 1024 * 1024  # an utterance file larger than this is not sent
AUDIO_CONTENT_TYPES = {"wav": "audio/wav", "pcm": "application/octet-stream"}


class AudioBody(Struct, omit_defaults=True):
    """Where the audio of a request is: `event` (the stored body of event `ref`, raw PCM16
    at `sample_rate`) or `file` (the WAV at `ref`, inside the data folder)."""

    source: Literal["event", "file"]
    ref: str
    sample_rate: int = 0
    format: Literal["wav", "pcm"] = "wav"
    field: str = ""  # a multipart file field; "" sends the audio as the whole body
    filename: str = ""
    form: dict[str, str] = {}  # other multipart fields


class AudioMissing(LookupError):
    """The audio a request names is gone (event pruned, file deleted or moved out)."""


def read_audio(audio: AudioBody, env: SendEnv) -> bytes:
    """The bytes to send, in `audio.format` (blocking: call it in a thread)."""
    if audio.source == "event":
        if env.event_body is None:
            raise AudioMissing("no event store to read the chunk from")
        pcm = env.event_body(audio.ref)
        return as_wav(pcm, audio.sample_rate) if audio.format == "wav" else pcm
    # an utterance file, and nothing else: checked again, links followed, at send
    utterances = os.path.join(env.data_dir, UTTERANCES)
    path = Path(inside_data(utterances, audio.ref))
    if path.stat().st_size > MAX_AUDIO_BYTES:
        raise AudioMissing(f"{audio.ref} is over {MAX_AUDIO_BYTES} bytes")
    data = path.read_bytes()
    return data if audio.format == "wav" else data[WAV_HEADER_BYTES:]


def request_parts(audio: AudioBody, data: bytes, headers: dict[str, Any]) -> dict[str, Any]:
    """httpx keyword arguments sending `data` as `audio` says (Content-Type added to
    `headers` for a raw body unless the rule set one)."""
    kind = AUDIO_CONTENT_TYPES[audio.format]
    if audio.field:
        name = audio.filename or f"audio.{audio.format}"
        return {"files": {audio.field: (name, data, kind)}, "data": dict(audio.form)}
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = kind
    return {"content": data}
