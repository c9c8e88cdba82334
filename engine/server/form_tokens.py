"""One-time form tokens for the public setup page.

`GET /setup?uid=...` is public (Omi opens it for any user, and a uid is not a secret), so
its forms cannot lean on a login session. Each page carries a token issued for that uid;
a POST must bring it back, and it works once, for that uid, within FORM_TOKEN_SECONDS. A
cross-site form post has no way to read a fresh token, and a replayed post finds it spent.

Tokens are kept in memory under a digest (at most MAX_TOKENS, the oldest dropped first: a
script fetching the page forever only evicts its own old tokens); a restart spends them all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

FORM_TOKEN_SECONDS = 3600.0
MAX_TOKENS = 10_000


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class FormTokens:
    def __init__(self, seconds: float = FORM_TOKEN_SECONDS, limit: int = MAX_TOKENS) -> None:
        self.seconds = seconds
        self.limit = limit
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()  # key -> (uid, expiry)

    def issue(self, uid: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        self._tokens[_key(token)] = (uid, now + self.seconds)
        while len(self._tokens) > self.limit:
            self._tokens.popitem(last=False)
        return token

    def consume(self, uid: str, token: str, now: float | None = None) -> bool:
        """Whether `token` was issued for `uid` and is unexpired; spent either way."""
        if not token:
            return False
        held = self._tokens.pop(_key(token), None)
        if held is None:
            return False
        owner, expires = held
        now = time.time() if now is None else now
        return hmac.compare_digest(owner.encode(), uid.encode()) and now < expires

    def __len__(self) -> int:
        return len(self._tokens)
