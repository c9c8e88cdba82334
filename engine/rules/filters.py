"""Template filters for conversations: `transcript`, `duration`, `bullets`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any


def speaker_label(segment: Mapping[str, Any]) -> str:
    """The friendliest name a segment gives its speaker."""
    if segment.get("speaker_name"):
        return str(segment["speaker_name"])
    if segment.get("is_user"):
        return "You"
    speaker_id = segment.get("speaker_id", segment.get("speakerId"))
    if speaker_id is not None:
        return f"Speaker {speaker_id}"
    return str(segment.get("speaker") or "Speaker")


def transcript(segments: Any) -> str:
    """Segments (or a memory/session holding them) as "Speaker: text" lines."""
    if isinstance(segments, Mapping):
        segments = segments.get("transcript_segments") or segments.get("segments") or []
    lines = []
    for segment in segments or []:
        if isinstance(segment, Mapping):
            lines.append(f"{speaker_label(segment)}: {str(segment.get('text', '')).strip()}")
    return "\n".join(lines)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        start, end = _parse_time(value.get("started_at")), _parse_time(value.get("finished_at"))
        if start and end:
            return (end - start).total_seconds()
        return _seconds(value.get("transcript_segments") or value.get("segments"))
    if isinstance(value, list) and value and all(isinstance(s, Mapping) for s in value):
        starts = [float(s["start"]) for s in value if isinstance(s.get("start"), int | float)]
        ends = [float(s["end"]) for s in value if isinstance(s.get("end"), int | float)]
        if starts and ends:
            return max(ends) - min(starts)
    return None


def duration(value: Any) -> str:
    """Seconds, a memory (started_at..finished_at) or segments as "1h 2m", "3m 5s", "42s"."""
    seconds = _seconds(value)
    if seconds is None:
        return ""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


_ITEM_KEYS = ("description", "text", "title", "summary", "question", "decision", "insight", "name")


def bullets(items: Any, key: str | None = None, marker: str = "-") -> str:
    """A list as "- item" lines; mappings show `key` or their first descriptive field."""
    lines = []
    for item in items or []:
        if isinstance(item, Mapping):
            if key is not None:
                text = item.get(key, "")
            else:
                text = next((item[k] for k in _ITEM_KEYS if item.get(k)), "")
        else:
            text = item
        lines.append(f"{marker} {text}")
    return "\n".join(lines)


FILTERS: dict[str, Callable[..., Any]] = {
    "transcript": transcript,
    "duration": duration,
    "bullets": bullets,
}
