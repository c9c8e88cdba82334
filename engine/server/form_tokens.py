"""One-time form tokens for the public setup page.

`GET /setup?uid=...` is public (Omi opens it for any user, and a uid is not a secret), so
its forms cannot lean on a login session. Each page carries a token issued for that uid;
a POST must bring it back, and it works once, for that uid, within FORM_TOKEN_SECONDS. A
cross-site form post has no way to read a fresh token, and a replayed post finds it spent.

A token is `expiry.nonce.mac` (expiry in epoch milliseconds), the MAC (HMAC-SHA256 under a
key made at start) covering the uid, the expiry and the nonce: issuing one keeps nothing,
so no flood of page loads can evict another user's token. Only spent nonces are kept,
until their token expires (at most MAX_SPENT, the oldest dropped first: such a token is
one its own holder already sent). A restart makes a new key, so every token issued before
is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

FORM_TOKEN_SECONDS = 3600.0
MAX_SPENT = 100_000


class FormTokens:
    def __init__(self, seconds: float = FORM_TOKEN_SECONDS, limit: int = MAX_SPENT) -> None:
        self.seconds = seconds
        self.limit = limit
        self._key = secrets.token_bytes(32)
        self._spent: OrderedDict[str, float] = OrderedDict()  # nonce -> its token's expiry

    def _mac(self, uid: str, expiry: str, nonce: str) -> str:
        message = f"{uid}\x00{expiry}\x00{nonce}".encode("utf-8", "replace")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, uid: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        expiry = str(int((now + self.seconds) * 1000))  # milliseconds
        nonce = secrets.token_urlsafe(16)
        return f"{expiry}.{nonce}.{self._mac(uid, expiry, nonce)}"

    def consume(self, uid: str, token: str, now: float | None = None) -> bool:
        """Whether `token` was issued for `uid`, is unexpired and unspent; spent if so."""
        now = time.time() if now is None else now
        expiry, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expiry and nonce and mac) or len(token) > 200:
            return False
        if not hmac.compare_digest(mac.encode(), self._mac(uid, expiry, nonce).encode()):
            return False
        try:
            expires = int(expiry) / 1000
        except ValueError:
            return False
        self._forget_expired(now)
        if now >= expires or nonce in self._spent:
            return False
        self._spent[nonce] = expires
        while len(self._spent) > self.limit:
            self._spent.popitem(last=False)
        return True

    def _forget_expired(self, now: float) -> None:
        while self._spent:
            nonce, expires = next(iter(self._spent.items()))
            if expires > now:
                return
            del self._spent[nonce]

    def __len__(self) -> int:
        """Spent nonces kept (issued tokens are not kept at all)."""
        return len(self._spent)
