"""A finished conversation (memory)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.runtime.payloads import decode_memory
from engine.triggers import MiB, Trigger


def memory_id(doc: Mapping[str, Any]) -> str | None:
    """One memory can come under two headers (the developer webhook and an app)."""
    return str(doc["id"]) if doc.get("id") else None


memory = Trigger(
    name="memory",
    endpoint="/webhook/memory",
    summary="A finished conversation (memory)",
    decode=lambda body, uid, query: decode_memory(body, uid),
    template_names=frozenset({"memory"}),
    aliases=lambda view: {"memory": view.doc},
    spoken=lambda doc: list(doc.get("transcript_segments") or []),
    dedupe_id=memory_id,
    answer_read_by_omi=True,
    body_limit=32 * MiB,  # a memory may carry photos (OpenGlass) as base64
)
