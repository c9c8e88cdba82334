"""The keys that encrypt per-user secret settings at rest (Fernet, from `cryptography`).

`settings_keys` (config, or OMI_RULES_SETTINGS_KEYS, comma-separated) lists Fernet keys: the
first encrypts, every one decrypts, so a key is rotated by putting a new one first and
keeping the old one until the server has started once (with more than one key, it
re-encrypts every stored value with the first at start; then the old key may go).
Unset, one key is made at first start and kept in `<data_dir>/settings.key` (mode 0600),
like the sealing key: back it up with the database, or the stored secrets cannot be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from engine.config import ConfigError, Settings
from engine.errors import SecretError
from engine.keyfiles import key_fingerprint, read_or_create

KEY_FILE = "settings.key"


class SettingsCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("settings_keys: at least one key is needed")
        self.rotating = len(keys) > 1  # an older key is still listed: rotate at start
        self.fingerprints = [key_fingerprint(key.strip().encode()) for key in keys]
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
        except (ValueError, TypeError):
            raise ConfigError(
                "settings_keys: each key must be a Fernet key (32 url-safe base64 bytes; "
                "make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None

    @classmethod
    def for_settings(cls, settings: Settings) -> SettingsCipher:
        """The configured keys, else the one kept under `data_dir` (made at first start)."""
        if settings.settings_keys:
            return cls(settings.settings_keys)
        key, _created = read_or_create(
            Path(settings.data_dir) / KEY_FILE, lambda: Fernet.generate_key().decode()
        )
        return cls([key])

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretError(
                "a stored user setting cannot be decrypted with settings_keys "
                "(was the key that encrypted it removed?)"
            ) from None

    def rotate(self, token: str) -> str:
        """`token` encrypted again with the first key (SecretError if no key opens it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretError("a stored user setting cannot be decrypted to rotate it") from None
