"""Who may post a webhook: Omi's signature, a shared token, or both.

    signing_secret set, request signed      the signature must verify (a valid token
                                            never excuses a bad signature)
    signing_secret set, request unsigned    accepted only with a valid token (Omi sends
                                            unsigned when it cannot load its secret)
    only a token set                        the token is required
    neither                                 open (fine on loopback; see README)

The token may come as `?token=`, an `X-Omi-Rules-Token` header or `Authorization: Bearer`.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.config import Settings
from engine.errors import PayloadError
from engine.server import signing


class Unauthorized(PayloadError):
    """The request's signature or token is missing or wrong (401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=401)


def presented_token(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    given = query.get("token") or headers.get("x-omi-rules-token")
    auth = headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given or None


def authenticate(
    settings: Settings,
    *,
    uid: str,
    body: bytes,
    query: Mapping[str, str],
    headers: Mapping[str, str],  # lower-case names
) -> None:
    """Raise Unauthorized unless the request may be accepted (see the table above)."""
    signature = headers.get(signing.SIGNATURE_HEADER)
    if settings.signing_secret and signature:
        reason = signing.refusal(
            signature,
            settings.signing_secret,
            uid=uid,
            body=body,
            tolerance=settings.signature_tolerance,
        )
        if reason is not None:
            raise Unauthorized(reason)
        return
    if settings.token:
        if not signing.token_matches(presented_token(query, headers), settings.token):
            unsigned = "unsigned delivery: " if settings.signing_secret else ""
            raise Unauthorized(f"{unsigned}missing or wrong token")
        return
    if settings.signing_secret:
        raise Unauthorized("missing X-Omi-Signature")
