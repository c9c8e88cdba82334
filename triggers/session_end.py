"""The end of a live transcript session, raised by omi-rules itself (no webhook): when a
session has been quiet for `session_idle`, its whole text and segments, once."""

from __future__ import annotations

from typing import Any

from engine.runtime.payloads import decode_session_end
from engine.triggers import Trigger


def session_alias(view: Any) -> dict[str, Any]:
    doc = view.doc
    return {
        "id": doc.get("session_id", ""),
        "segments": doc.get("segments", []),
        "text": doc.get("text", ""),
        **{k: doc.get(k) for k in ("started_at", "ended_at", "duration", "calls", "ended_by")},
    }


transcript_session_end = Trigger(
    name="transcript_session_end",
    endpoint="",  # derived: raised by the receiver when a live session goes idle
    summary="A live transcript session went idle (session_idle): its whole text and segments",
    decode=lambda body, uid, query: decode_session_end(body, uid),
    template_names=frozenset({"segments", "session"}),
    aliases=lambda view: {"segments": view.doc.get("segments", []), "session": session_alias(view)},
    spoken=lambda doc: list(doc.get("segments") or []),
)
