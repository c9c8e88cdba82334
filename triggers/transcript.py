"""Live transcript segments: pieces of one session, each piece seen once."""

from __future__ import annotations

from engine.runtime.payloads import decode_transcript
from engine.triggers import Trigger

transcript = Trigger(
    name="transcript",
    endpoint="/webhook/transcript",
    summary="Live transcript segments (a list, or {session_id, segments})",
    decode=lambda body, uid, query: decode_transcript(
        body, uid, str(query.get("session_id") or "")
    ),
    template_names=frozenset({"segments", "session"}),
    aliases=lambda view: {"segments": view.doc.get("segments", []), "session": view.session},
    spoken=lambda doc: list(doc.get("segments") or []),
    live_sessions=True,
    answer_read_by_omi=True,
)
