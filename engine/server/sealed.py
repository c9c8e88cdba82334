"""Sealed secrets: how a stored request refers to a secret without holding it.

A rendered request holds real secret values; before it is stored (outbox, a notify answer
kept for Omi's retries) each value is replaced by a seal, `<secret:NAME:MAC>`, where MAC is
an HMAC of the store context (the action's idempotency key, or the event's answer) and the
name, under a key the server keeps in its data folder. Just before sending, only seals whose
MAC verifies for that same context are opened to the secret's current value.

Payload text is copied into requests, so it may contain anything, `<secret:NAME>` or a
made-up seal included. It can never be opened: a sender does not know the key, and the
context holds the event id, which the server picks at random after the payload arrived.
Text that is not a valid seal stays exactly as it was and is sent as text.

A per-user setting (`user.NAME`) is bound to its value as well: its MAC covers a digest of
the value it replaced, so it opens only while the user still holds that very value. A
setting replaced since (Disconnect, then someone else's value) makes the seal an error,
SecretError, and nothing is sent: a retry never hands a user's past event to whoever holds
the uid's settings now. Text shaped like a user seal in a payload fails that action too.

People see requests with seals shown as `<secret:NAME>` (`shown`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as random
from pathlib import Path
from typing import Any

from engine.errors import SecretError
from engine.keyfiles import key_fingerprint, read_or_create
from engine.runtime.user_values import USER_SECRET_PREFIX
from engine.secrets import Secrets, placeholder, walk_strings

KEY_FILE = "seal.key"

_SEAL = re.compile(r"<secret:([A-Za-z0-9_.-]+):([0-9a-f]{32})>")


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> Sealer:
        """The sealing key kept under `data_dir` (made at first start)."""
        text, _created = read_or_create(Path(data_dir) / KEY_FILE, lambda: random.token_hex(32))
        return cls(bytes.fromhex(text))

    def fingerprint(self) -> str:
        return key_fingerprint(self._key)

    def _mac(self, context: str, name: str, secrets: Secrets) -> str:
        message = f"{context}\x00{name}"
        if name.startswith(USER_SECRET_PREFIX):  # bound to the value (SecretError when unset)
            digest = hashlib.sha256(secrets.get(name).encode("utf-8", "replace")).hexdigest()
            message += f"\x00{digest}"
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()[:32]

    def seal(self, value: Any, secrets: Secrets, context: str) -> Any:
        """`value` with every secret's text replaced by a seal bound to `context` (and, for
        a user's setting, to its value)."""
        return secrets.replace_values(
            value, lambda name: f"<secret:{name}:{self._mac(context, name, secrets)}>"
        )

    def unseal(self, value: Any, secrets: Secrets, context: str) -> Any:
        """`value` with the seals made for `context` opened to the secrets' current values
        (SecretError when such a secret is no longer set); any other text stays as is."""

        def open_seal(match: re.Match[str]) -> str:
            name, mac = match[1], match[2]
            if hmac.compare_digest(mac, self._mac(context, name, secrets)):
                return secrets.get(name)
            if name.startswith(USER_SECRET_PREFIX):
                raise SecretError(
                    f"per-user setting {name} changed since this was stored; not sent"
                )
            return match[0]

        return walk_strings(
            value, lambda text: _SEAL.sub(open_seal, text) if "<secret:" in text else text
        )


def shown(value: Any) -> Any:
    """A stored value as people see it: seals as `<secret:NAME>`."""
    return walk_strings(
        value,
        lambda text: _SEAL.sub(lambda m: placeholder(m[1]), text) if "<secret:" in text else text,
    )
