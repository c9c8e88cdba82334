"""Query parameters as Omi really sends them.

Omi's app delivery appends `?sample_rate=...&uid=...` to the webhook URL even when the URL
already has a query, so `/webhook/audio?token=T` arrives as `?token=T?sample_rate=16000&uid=U`
and a plain parser reads `token` as `T?sample_rate=16000`. Every `?` after the first is read
as `&` here, which recovers each parameter; a `?` inside a value arrives percent-encoded
(`%3F`) from any well-behaved client, so nothing real is lost.
"""

from __future__ import annotations

from urllib.parse import parse_qsl


def recover_query(raw: bytes | str) -> dict[str, str]:
    """Parameters of a raw query string; the first value of a repeated name wins."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    params: dict[str, str] = {}
    for name, value in parse_qsl(text.replace("?", "&"), keep_blank_values=True):
        params.setdefault(name, value)
    return params
