"""Omi's webhook signature: `X-Omi-Signature: t=<unix>,v1=<hex>[,v1=<hex>]`.

v1 is HMAC-SHA256, keyed with the whole `whsec_...` secret, over `"<t>.<uid>."` followed by
the raw body bytes; the timestamp must be within the tolerance either way; during a secret
rotation the header carries one v1 per secret and any may match. Compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "x-omi-signature"


def compute(secret: str, timestamp: int, uid: str, body: bytes) -> str:
    message = f"{timestamp}.{uid}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, uid: str, body: bytes, timestamp: int | None = None) -> str:
    """A header value as Omi would send it (for tests and for trying the receiver)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={compute(secret, ts, uid, body)}"


def parse(header: str) -> tuple[int | None, list[str]]:
    timestamp, signatures = None, []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return None, []
            if not 0 <= timestamp < 2**63:  # far outside any tolerance; no float overflow
                return None, []
        elif key == "v1" and value:
            signatures.append(value)
    return timestamp, signatures


def refusal(
    header: str | None,
    secret: str,
    *,
    uid: str,
    body: bytes,
    tolerance: float,
    now: float | None = None,
) -> str | None:
    """Why the signature is not acceptable, or None when it verifies."""
    if not header:
        return "missing X-Omi-Signature"
    timestamp, signatures = parse(header)
    if timestamp is None or not signatures:
        return "malformed X-Omi-Signature"
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return "stale X-Omi-Signature (timestamp outside the tolerance)"
    expected = compute(secret, timestamp, uid, body).encode()
    if not any(hmac.compare_digest(expected, s.encode("utf-8", "replace")) for s in signatures):
        return "X-Omi-Signature does not match"
    return None


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode()
    )
