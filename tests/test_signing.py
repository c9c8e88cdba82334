"""Omi's X-Omi-Signature: v1 HMAC over "<t>.<uid>." + body, tolerance, rotation."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from engine.server import signing

SECRET = "whsec_abc"
BODY = b'{"id": "m1"}'


def test_compute_matches_the_published_construction() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000.user1." + BODY, hashlib.sha256).hexdigest()
    assert signing.compute(SECRET, 1700000000, "user1", BODY) == expected


def test_refusals_name_the_problem() -> None:
    now = 1700000000.0
    good = signing.sign(SECRET, "user1", BODY, timestamp=int(now))

    def check(header: str | None, **kw: Any) -> str | None:
        return signing.refusal(
            header,
            SECRET,
            uid=kw.get("uid", "user1"),
            body=kw.get("body", BODY),
            tolerance=300,
            now=kw.get("now", now),
        )

    assert check(good) is None
    assert check(None) == "missing X-Omi-Signature"
    assert check("garbage") == "malformed X-Omi-Signature"
    assert check("t=abc,v1=00") == "malformed X-Omi-Signature"
    assert check("t=" + "9" * 400 + ",v1=00") == "malformed X-Omi-Signature"
    assert check("t=-" + "9" * 400 + ",v1=00") == "malformed X-Omi-Signature"
    assert check(good, now=now + 301) == "stale X-Omi-Signature (timestamp outside the tolerance)"
    assert check(good, now=now - 301) == "stale X-Omi-Signature (timestamp outside the tolerance)"
    assert check(good, uid="user2") == "X-Omi-Signature does not match"
    assert check(good, body=BODY + b" ") == "X-Omi-Signature does not match"
    assert check(good.replace("v1=", "v1=ü")) == "X-Omi-Signature does not match"


def test_rotation_accepts_either_signature() -> None:
    old = signing.sign("whsec_old", "u", BODY, timestamp=100)
    both = old + ",v1=" + signing.compute(SECRET, 100, "u", BODY)
    assert signing.refusal(both, SECRET, uid="u", body=BODY, tolerance=300, now=100) is None


def test_token_comparison() -> None:
    assert signing.token_matches("abc", "abc")
    assert not signing.token_matches("abd", "abc")
    assert not signing.token_matches(None, "abc")
