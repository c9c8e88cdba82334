"""Record: append raw PCM16 audio to a WAV file per user and session (or time slice)."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from pathlib import Path

from msgspec import Struct

from engine.connector import EVENT_BODY, ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.durations import parse_duration
from engine.errors import DeliveryError
from engine.paths import data_file, inside_data

WAV_HEADER_BYTES = 44
_file_lock = threading.Lock()  # appends rewrite the header: one at a time


class RecordOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    path: str | None = None  # in the data folder; default: recordings/<uid>/<session or day>.wav
    rotate: str | float | None = None  # start a new file every this long (e.g. 1h)


class RecordRequest(Struct):
    path: str
    sample_rate: int
    event_id: str
    bytes: int


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "unknown"


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """A 44-byte RIFF header for mono 16-bit PCM."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def append_wav(path: Path, pcm: bytes, sample_rate: int, key: str = "") -> int:
    """Append PCM to a WAV file (created if missing); returns the data size after.

    With a `key` (the action's idempotency key), a chunk already appended under that key is
    not appended again: the keys are kept in `<file>.keys` beside the recording."""
    pcm = pcm[: len(pcm) - len(pcm) % 2]  # whole samples only, or every later one shifts
    keys = path.with_name(path.name + ".keys")
    with _file_lock:
        if key and keys.exists() and key in keys.read_text(encoding="utf-8").splitlines():
            return path.stat().st_size - WAV_HEADER_BYTES
        size = _append(path, pcm, sample_rate)
        if key:
            with keys.open("a", encoding="utf-8") as file:
                file.write(key + "\n")
        return size


def _append(path: Path, pcm: bytes, sample_rate: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a new file only: whatever exists already is never overwritten
        with path.open("xb") as new:
            new.write(wav_header(sample_rate, 0))
    except FileExistsError:
        pass
    with path.open("r+b") as file:
        header = file.read(WAV_HEADER_BYTES)
        if header[:4] != b"RIFF" or header[8:16] != b"WAVEfmt " or header[36:40] != b"data":
            raise ValueError(f"{path} is not a WAV file omi-rules wrote")
        (existing_rate,) = struct.unpack("<I", header[24:28])
        if existing_rate != sample_rate:
            raise ValueError(f"{path} holds {existing_rate} Hz audio, got {sample_rate} Hz")
        file.seek(0, os.SEEK_END)
        file.write(pcm)
        data = file.tell() - WAV_HEADER_BYTES
        file.seek(4)
        file.write(struct.pack("<I", 36 + data))
        file.seek(40)
        file.write(struct.pack("<I", data))
    return data


class Record(ConnectorBase[RecordOptions, RecordRequest]):
    name = "record"
    summary = "Append the audio to a WAV file (default data/recordings/<uid>/...)"
    Options = RecordOptions
    Request = RecordRequest
    needs = frozenset({EVENT_BODY})  # the audio is the stored body of the event

    def validate(self, options: RecordOptions) -> list[tuple[str, str]]:
        if options.rotate is not None:
            try:
                parse_duration(options.rotate)
            except ValueError as exc:
                return [("rotate", str(exc))]
        return []

    def render(self, options: RecordOptions, env: RenderEnv) -> RecordRequest:
        event = env.event or {}
        when = env.received_at or time.time()
        slice_name = time.strftime("%Y-%m-%d", time.gmtime(when))
        if options.rotate is not None:
            period = parse_duration(options.rotate)
            slice_name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when // period * period))
        if options.path:
            stem, ext = os.path.splitext(options.path)
            path = (
                f"{stem}-{slice_name}{ext or '.wav'}"
                if options.rotate is not None
                else options.path
            )
        else:
            name = _safe(env.session_id) if env.session_id else slice_name
            path = os.path.join("recordings", _safe(env.uid), f"{name}.wav")
        path = data_file(env.data_dir, path)
        return RecordRequest(
            path, int(event.get("sample_rate", 8000)), env.event_id, int(event.get("bytes", 0))
        )

    async def send(self, request: RecordRequest, env: SendEnv) -> Delivered:
        if env.event_body is None:
            raise DeliveryError(
                "no audio store to read from", connector=self.name, url=request.path
            )
        try:
            pcm = await asyncio.to_thread(env.event_body, request.event_id)
        except (LookupError, OSError) as exc:  # the audio is gone: sending again cannot help
            raise DeliveryError(
                f"no audio for event {request.event_id}: {exc}",
                connector=self.name,
                url=request.path,
            ) from None
        try:
            path = inside_data(env.data_dir, request.path)  # again: the folder may have changed
            size = await asyncio.to_thread(
                append_wav, Path(path), pcm, request.sample_rate, env.idempotency_key
            )
        except (OSError, ValueError) as exc:
            raise DeliveryError(str(exc), connector=self.name, url=request.path) from None
        return Delivered(response=f"{request.path}: {size} bytes of audio")


connector = Record()
