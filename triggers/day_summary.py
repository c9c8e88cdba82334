"""The daily summary: its headline and overview are what was said."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.runtime.payloads import decode_day_summary
from engine.triggers import Trigger


def headline_and_overview(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    summary = doc.get("summary_json") or {}
    text = " ".join(str(summary.get(k) or "") for k in ("headline", "overview"))
    return [{"text": text, "is_user": True}]


day_summary = Trigger(
    name="day_summary",
    endpoint="/webhook/day-summary",
    summary="The daily summary",
    decode=lambda body, uid, query: decode_day_summary(body, uid),
    template_names=frozenset({"summary"}),
    aliases=lambda view: {"summary": view.doc.get("summary_json") or {}},
    spoken=headline_and_overview,
)
