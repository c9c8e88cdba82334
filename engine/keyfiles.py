"""Keys the server makes for itself and keeps under its data folder (owner-only files).

The admin token and the sealing key are generated once, at first start, and read back on
every later start, so a restart keeps the same token and can still open sealed requests.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], str] | None = None) -> tuple[str, bool]:
    """The text kept in `path`, or a new random value written there (mode 0600).

    Returns (value, created). Two processes starting at once both end up with the value
    of whichever wrote first: the file is created exclusively.
    """
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    if value:
        return value, False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make() if make else secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race, or an empty file was left
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing, False
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (value + "\n").encode())
    finally:
        os.close(fd)
    return value, True


def key_fingerprint(key: bytes) -> str:
    """What receivers sharing a store compare of a key (engine.server.shared_keys): a
    digest that tells keys apart and gives nothing of them away."""
    return hashlib.sha256(b"omi-rules key fingerprint\x00" + key).hexdigest()[:32]
