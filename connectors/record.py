"""Record: append raw PCM16 audio to a WAV file per user and session (or day, or time
slice), playable after every chunk (engine.wav), rotated by length or size, old files
deleted, silence left out on request."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from msgspec import Struct

from engine.connector import EVENT_BODY, ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.durations import parse_duration
from engine.errors import DeliveryError
from engine.paths import data_file, file_name_part, inside_data
from engine.wav import MAX_DATA_BYTES, append_wav, has_key, prune_older, wav_data_bytes

PRUNE_EVERY = 3600.0  # seconds between two sweeps of one folder for `keep`
MAX_PARTS = 10_000  # a file rotated more often than this keeps growing its last part
_pruned: dict[str, float] = {}  # folder -> when it was last swept (bounded by the folders)
_pruned_lock = threading.Lock()


class RecordOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    path: str | None = None  # in the data folder; default: recordings/<uid>/<session or day>.wav
    # start a new file every this long (wall clock, e.g. 1h): <session>-<slice>.wav
    rotate: str | float | None = None
    max_duration: str | float | None = None  # at most this much audio a file (then name.1.wav)
    max_bytes: int | None = None  # at most this many bytes of audio a file (then name.1.wav)
    keep: str | float | None = None  # delete recordings in the file's folder older than this
    speech_only: bool = False  # keep only chunks that are part of an utterance


class RecordRequest(Struct, omit_defaults=True):
    path: str
    sample_rate: int
    event_id: str
    bytes: int
    max_bytes: int = 0  # 0: no limit
    keep: float = 0.0  # seconds; 0: keep everything
    skip: str = ""  # why this chunk is not recorded (speech_only), or "" to record it


def _has_speech(event: dict[str, object]) -> bool:
    """Part of an utterance (the stream's voice activity), or, where no stream was
    followed (dry-run), any speech in the chunk itself."""
    speaking = event.get("speaking")
    if isinstance(speaking, bool):
        return speaking
    ratio = event.get("speech_ratio")
    return isinstance(ratio, int | float) and ratio > 0


def part_path(path: Path, index: int) -> Path:
    """The `index`-th file of a rotated recording: name.wav, name.1.wav, name.2.wav..."""
    return path if index == 0 else path.with_name(f"{path.stem}.{index}{path.suffix}")


def current_part(path: Path, adding: int, max_bytes: int) -> Path:
    """The file `adding` more bytes of audio go to: the first part that is missing, or
    has room, or is empty."""
    if max_bytes <= 0:
        return path
    for index in range(MAX_PARTS):
        part = part_path(path, index)
        held = wav_data_bytes(part)
        if held == 0 or held + adding <= max_bytes:  # a missing part holds 0
            return part
    return part_path(path, MAX_PARTS - 1)


def prune_folder(folder: Path, keep: float, now: float) -> int:
    """Delete recordings in `folder` older than `keep` seconds, at most once an hour."""
    key = str(folder)
    with _pruned_lock:
        if now - _pruned.get(key, 0.0) < PRUNE_EVERY:
            return 0
        _pruned[key] = now
    return prune_older(folder, now - keep)


def record_chunk(request: RecordRequest, pcm: bytes, key: str, data_dir: str) -> str:
    """Append `pcm` where `request` says (blocking); returns what happened, for history."""
    base = Path(inside_data(data_dir, request.path))
    # a WAV's header counts at most MAX_DATA_BYTES (4 GiB): a longer recording rotates
    limit = min(request.max_bytes or MAX_DATA_BYTES, MAX_DATA_BYTES)
    part = current_part(base, len(pcm), limit)
    if key:
        # an earlier part may hold this chunk already: appended, then not marked sent (a
        # crash, a deadline), and resent once that part was full
        index = 0
        while (earlier := part_path(base, index)) != part and index < MAX_PARTS:
            if has_key(Path(inside_data(data_dir, str(earlier))), key):
                return f"{earlier}: already recorded"
            index += 1
    path = Path(inside_data(data_dir, str(part)))
    size = append_wav(path, pcm, request.sample_rate, key)
    if request.keep > 0:
        prune_folder(path.parent, request.keep, time.time())
    return f"{part}: {size} bytes of audio"


class Record(ConnectorBase[RecordOptions, RecordRequest]):
    name = "record"
    summary = "Append the audio to a WAV file (default data/recordings/<uid>/...)"
    Options = RecordOptions
    Request = RecordRequest
    needs = frozenset({EVENT_BODY})  # the audio is the stored body of the event

    def order_key(self, request: RecordRequest) -> str:
        """Chunks of one recording are appended one at a time, in the order they came."""
        return request.path

    def validate(self, options: RecordOptions) -> list[tuple[str, str]]:
        for name in ("rotate", "max_duration", "keep"):
            value = getattr(options, name)
            if value is not None:
                try:
                    parse_duration(value)
                except ValueError as exc:
                    return [(name, str(exc))]
        if options.max_bytes is not None and options.max_bytes < 2:
            return [("max_bytes", "max_bytes must be at least 2 (one sample)")]
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
            name = file_name_part(env.session_id) if env.session_id else slice_name
            if env.session_id and options.rotate is not None:  # a file per session and slice
                name = f"{name}-{slice_name}"
            path = os.path.join("recordings", file_name_part(env.uid), f"{name}.wav")
        path = data_file(env.data_dir, path)
        rate = int(event.get("sample_rate", 8000))
        limits = [options.max_bytes or 0]
        if options.max_duration is not None:
            limits.append(int(parse_duration(options.max_duration) * rate) * 2)
        max_bytes = min((limit for limit in limits if limit > 0), default=0)
        return RecordRequest(
            path,
            rate,
            env.event_id,
            int(event.get("bytes", 0)),
            max_bytes=max_bytes,
            keep=parse_duration(options.keep) if options.keep is not None else 0.0,
            skip="no speech (speech_only)"
            if options.speech_only and not _has_speech(event)
            else "",
        )

    async def send(self, request: RecordRequest, env: SendEnv) -> Delivered:
        if request.skip:
            return Delivered(response=f"not recorded: {request.skip}")
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
        try:  # inside_data again: the folder may have changed since rendering
            done = await asyncio.to_thread(
                record_chunk, request, pcm, env.idempotency_key, env.data_dir
            )
        except (OSError, ValueError) as exc:
            raise DeliveryError(str(exc), connector=self.name, url=request.path) from None
        return Delivered(response=done)


connector = Record()
