"""Omi's webhook bodies: lenient decoding into the document rules see.

Each trigger's body is decoded to plain JSON data (the document JSONPath and templates see,
unknown fields kept), normalized (both spellings of renamed fields, a legacy day summary's
`summary_json` filled in), then checked against msgspec Structs that declare only what the
engine relies on, so a wrong shape is a PayloadError (4xx) and never a crash later.
"""

from __future__ import annotations

import ast
import time
from typing import Any

import msgspec
from msgspec import Struct

from engine.errors import PayloadError
from engine.runtime.audio_features import measure
from engine.triggers import default_triggers

MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 192000
# a legacy summary longer than this is not parsed (ast costs ~1 s per MB), only used as text
MAX_LEGACY_SUMMARY_CHARS = 64 * 1024


class Segment(Struct):
    text: str | None = ""
    speaker: str | None = None
    speaker_id: int | str | None = None
    speaker_name: str | None = None
    is_user: bool | None = False
    start: float | None = None
    end: float | None = None
    id: str | None = None


class ActionItem(Struct):
    description: str | None = ""
    completed: bool | None = False


class Structured(Struct):
    title: str | None = ""
    overview: str | None = ""
    emoji: str | None = ""
    category: str | None = ""
    action_items: list[ActionItem] | None = None
    events: list[dict[str, Any]] | None = None


class Memory(Struct):
    id: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    transcript_segments: list[Segment] | None = None
    structured: Structured | None = None
    discarded: bool | None = False


class TranscriptBatch(Struct):
    segments: list[Segment]
    session_id: str | None = None


class DaySummary(Struct):
    uid: str | None = None
    created_at: str | None = None
    summary: str | dict[str, Any] | None = None
    summary_json: dict[str, Any] | None = None


class Event(Struct):
    """One received webhook, decoded: `doc` is what rules see."""

    trigger: str
    uid: str
    doc: dict[str, Any]
    session_id: str = ""
    received_at: float = 0.0
    audio: bytes | None = None
    id: str = ""
    # raised by the server, not sent: a live session's open slots whose wait is over close
    # (engine.rules.keywords); stored as a call with no segments and `closing` in params
    closing: bool = False
    # audio: one byte per voice-activity frame of the chunk (1 speech), for the stream's
    # start/end detection (engine.runtime.audio_streams); not part of what rules see
    voiced: bytes = b""


def _json(body: bytes, trigger: str) -> Any:
    if not body.strip():
        raise PayloadError("empty body, expected JSON", trigger=trigger)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise PayloadError(f"not JSON ({exc})", trigger=trigger) from None
    except UnicodeDecodeError as exc:  # invalid UTF-8 inside a string
        raise PayloadError(f"not UTF-8 JSON (byte {exc.start})", trigger=trigger) from None


def _check(doc: Any, model: type[Struct], trigger: str) -> None:
    try:
        msgspec.convert(doc, model, strict=False)
    except msgspec.ValidationError as exc:
        raise PayloadError(str(exc).replace("`", "'"), trigger=trigger) from None


def _normalize_segments(segments: list[Any]) -> None:
    """Accept both `speakerId` (docs) and `speaker_id` (backend): make both present."""
    for segment in segments:
        if isinstance(segment, dict):
            if "speaker_id" not in segment and "speakerId" in segment:
                segment["speaker_id"] = segment["speakerId"]
            elif "speakerId" not in segment and "speaker_id" in segment:
                segment["speakerId"] = segment["speaker_id"]


def decode_memory(body: bytes, uid: str) -> Event:
    doc = _json(body, "memory")
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {type(doc).__name__}", trigger="memory")
    _check(doc, Memory, "memory")
    _normalize_segments(doc.get("transcript_segments") or [])
    # docs say apps_response, the backend sends apps_results: make both reachable
    if "apps_response" not in doc and "apps_results" in doc:
        doc["apps_response"] = doc["apps_results"]
    elif "apps_results" not in doc and "apps_response" in doc:
        doc["apps_results"] = doc["apps_response"]
    return Event("memory", uid, doc, id=str(doc.get("id") or ""), received_at=time.time())


def decode_transcript(body: bytes, uid: str, session_id: str = "") -> Event:
    data = _json(body, "transcript")
    if isinstance(data, list):
        doc: dict[str, Any] = {"segments": data, "session_id": session_id or uid}
    elif isinstance(data, dict):
        doc = data
        if "segments" not in doc:
            raise PayloadError("missing 'segments'", trigger="transcript")
    else:
        raise PayloadError(
            f"expected a list of segments or an object with 'segments', got {type(data).__name__}",
            trigger="transcript",
        )
    _check(doc, TranscriptBatch, "transcript")
    _normalize_segments(doc["segments"])
    session = str(session_id or doc.get("session_id") or uid)
    doc.setdefault("session_id", session)
    return Event("transcript", uid, doc, session_id=session, received_at=time.time())


class SessionEnd(Struct):
    session_id: str
    segments: list[Segment]
    text: str = ""
    started_at: str | None = None
    ended_at: str | None = None
    duration: float | None = None
    calls: int | None = None
    ended_by: str | None = None


def decode_session_end(body: bytes, uid: str) -> Event:
    """A transcript session's end, raised by the receiver (engine.runtime.sessions
    .session_end_doc) and decoded again from its stored body for replay and dry-run."""
    doc = _json(body, "transcript_session_end")
    if not isinstance(doc, dict):
        raise PayloadError(
            f"expected a JSON object, got {type(doc).__name__}", trigger="transcript_session_end"
        )
    _check(doc, SessionEnd, "transcript_session_end")
    _normalize_segments(doc["segments"])
    if not doc.get("text"):
        doc["text"] = " ".join(str(s.get("text") or "").strip() for s in doc["segments"]).strip()
    session = str(doc["session_id"])
    return Event("transcript_session_end", uid, doc, session_id=session, received_at=time.time())


def parse_legacy_summary(text: str) -> dict[str, Any] | None:
    """A day summary's legacy `summary` (a Python literal), parsed without evaluating code;
    None when it is not a dict literal or longer than MAX_LEGACY_SUMMARY_CHARS."""
    if len(text) > MAX_LEGACY_SUMMARY_CHARS:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def decode_day_summary(body: bytes, uid: str) -> Event:
    doc = _json(body, "day_summary")
    if not isinstance(doc, dict):
        raise PayloadError(
            f"expected a JSON object, got {type(doc).__name__}", trigger="day_summary"
        )
    _check(doc, DaySummary, "day_summary")
    if not isinstance(doc.get("summary_json"), dict):
        summary = doc.get("summary")
        if isinstance(summary, dict):
            doc["summary_json"] = summary
        elif isinstance(summary, str):
            parsed = parse_legacy_summary(summary)
            if parsed is None:
                doc["summary_json"] = {"overview": summary}
            else:
                doc["summary_json"] = parsed
        else:
            raise PayloadError("neither 'summary_json' nor 'summary' given", trigger="day_summary")
    event_id = str(doc["summary_json"].get("id") or "")
    return Event("day_summary", uid, doc, id=event_id, received_at=time.time())


def decode_audio(
    body: bytes,
    uid: str,
    sample_rate: int | str | None,
    session_duration_s: float | str | None = None,
    session_id: str = "",
    speaking: object = None,
) -> Event:
    """A chunk of PCM16 LE mono audio, measured (engine.runtime.audio_features).
    `session_id` (optional) names the stream; `session_duration_s` is its length so far,
    kept with the stored event so a replay shows what the rules saw (the chunk's own
    length when not given), and so is `speaking` (a bool: the chunk was part of an
    utterance; the stream sets it for a webhook)."""
    if sample_rate in (None, ""):
        raise PayloadError(
            "missing sample_rate query parameter (Omi sends it; 8000 or 16000)", trigger="audio"
        )
    try:
        rate = int(sample_rate)
    except ValueError:
        raise PayloadError(
            f"sample_rate {sample_rate!r} is not a number", trigger="audio"
        ) from None
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise PayloadError(
            f"sample_rate {rate} outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}", trigger="audio"
        )
    if not body:
        raise PayloadError("empty body: no audio", trigger="audio")
    if len(body) % 2:
        raise PayloadError(
            f"odd byte count ({len(body)}): not PCM16 (2 bytes a sample)", trigger="audio"
        )
    features = measure(body, rate)
    duration = round(features.duration_s, 6)
    try:
        so_far = float(session_duration_s) if session_duration_s is not None else duration
    except ValueError:
        so_far = duration
    doc = {
        "uid": uid,
        "sample_rate": rate,
        "bytes": len(body),
        "samples": features.samples,
        "duration_s": duration,
        "rms_dbfs": features.rms_dbfs,
        "peak_dbfs": features.peak_dbfs,
        "speech_ratio": features.speech_ratio,
        "clipped": features.clipped,
        "session_duration_s": round(so_far, 6),
        **({"speaking": speaking} if isinstance(speaking, bool) else {}),
        # the first names, kept for rules written before the dBFS ones
        "duration": round(features.duration_s, 3),
        "peak": features.peak,
        "rms": round(features.rms, 1),
        "silent": features.peak < 64,
    }
    return Event(
        "audio",
        uid,
        doc,
        session_id=session_id,
        audio=body,
        received_at=time.time(),
        voiced=features.voiced,
    )


def decode_speech(trigger: str, body: bytes, uid: str) -> Event:
    """A voice-activity event omi-rules raised (engine.runtime.audio_streams), stored as
    JSON: decoded again for history and replay."""
    doc = _json(body, trigger)
    if not isinstance(doc, dict):
        raise PayloadError(f"expected a JSON object, got {type(doc).__name__}", trigger=trigger)
    session_id = doc.get("session_id")
    return Event(
        trigger,
        uid,
        doc,
        session_id=session_id if isinstance(session_id, str) else "",
        received_at=time.time(),
    )


def decode_event(trigger: str, body: bytes, *, uid: str, **params: Any) -> Event:
    """Decode a webhook body for `trigger`; raise PayloadError with a one-line reason."""
    definition = default_triggers().get(trigger)
    if definition is None:
        raise PayloadError(f"unknown trigger {trigger!r}")
    event: Event = definition.decode(body, uid, params)
    return event
