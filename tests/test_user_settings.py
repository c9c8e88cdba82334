"""Per-user settings at rest (engine.server.user_settings, engine.server.setting_keys):
Fernet encryption with key rotation, the in-memory cache forgotten on every write, and the
secrets a user's values add (`user.NAME`, sealed and masked like the server's)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from engine.config import ConfigError, load_settings
from engine.errors import SecretError, SettingsTaken, TooManyUsers
from engine.secrets import Secrets
from engine.server.sealed import Sealer
from engine.server.setting_keys import KEY_FILE, SettingsCipher
from engine.server.store import Store
from engine.server.user_settings import UserSettings

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def kept(tmp_path: Path, keys: list[str]) -> tuple[Store, UserSettings]:
    store = Store(str(tmp_path / "omi.db"))
    return store, UserSettings(store, SettingsCipher(keys), lambda: SERVER)


SERVER = Secrets({"HOOK": "https://hooks.example.com/server"})


def test_a_secret_is_stored_encrypted_and_read_back(tmp_path: Path) -> None:
    store, users = kept(tmp_path, [OLD])
    try:
        asyncio.run(
            users.save("u1", {"token": ("tok-3e9a1c77", True), "database": ("db-plain-41", False)})
        )
        rows = {r["name"]: r for r in store.query("SELECT * FROM user_settings")}
        assert rows["database"]["value"] == "db-plain-41" and rows["database"]["secret"] == 0
        assert rows["token"]["secret"] == 1 and "tok-3e9a1c77" not in rows["token"]["value"]
        values = users.values("u1")
        assert dict(values.values) == {"token": "tok-3e9a1c77", "database": "db-plain-41"}
        assert values.secret_names == frozenset({"token"})
        assert values.missing(frozenset({"token", "other"})) == ["other"]
        assert users.stored("u1") == {"token": True, "database": False}
    finally:
        store.close()


def test_the_users_secrets_are_sealed_masked_and_opened_as_user_names(tmp_path: Path) -> None:
    store, users = kept(tmp_path, [OLD])
    try:
        asyncio.run(users.save("u1", {"token": ("tok-3e9a1c77", True)}))
        secrets = users.values("u1").secrets
        assert secrets.mask("Bearer tok-3e9a1c77 to https://hooks.example.com/server") == (
            "Bearer <secret:user.token> to <secret:HOOK>"
        )
        sealer = Sealer(b"k" * 32)
        sealed = sealer.seal({"auth": "Bearer tok-3e9a1c77"}, secrets, "ev1:r:0")
        assert "tok-3e9a1c77" not in sealed["auth"]
        assert sealer.unseal(sealed, secrets, "ev1:r:0") == {"auth": "Bearer tok-3e9a1c77"}
        with pytest.raises(SecretError):  # another user has no such secret
            sealer.unseal(sealed, users.values("u2").secrets, "ev1:r:0")
    finally:
        store.close()


def test_a_write_forgets_the_cached_values(tmp_path: Path) -> None:
    store, users = kept(tmp_path, [OLD])
    try:
        assert dict(users.values("u1").values) == {}  # cached as empty
        asyncio.run(users.save("u1", {"url": ("https://a.example/x", False)}))
        assert dict(users.values("u1").values) == {"url": "https://a.example/x"}
        assert users.values("u1") is users.values("u1")  # now from memory
        removed, events = asyncio.run(users.disconnect("u1", forget_events=False))
        assert (removed, events) == (1, 0)
        assert dict(users.values("u1").values) == {}
    finally:
        store.close()


def test_keys_rotate_the_first_encrypts_all_decrypt(tmp_path: Path) -> None:
    store, users = kept(tmp_path, [OLD])
    asyncio.run(users.save("u1", {"token": ("tok-3e9a1c77", True)}))
    store.close()
    store, users = kept(tmp_path, [NEW, OLD])
    try:
        assert users.values("u1").values["token"] == "tok-3e9a1c77"  # the old key decrypts
        assert users.rotate_all() == 1
    finally:
        store.close()
    store, users = kept(tmp_path, [NEW])  # the old key is gone
    try:
        assert users.values("u1").values["token"] == "tok-3e9a1c77"
    finally:
        store.close()
    store, users = kept(tmp_path, [Fernet.generate_key().decode()])
    try:  # no key opens it: as if unset (the user is asked again)
        assert dict(users.values("u1").values) == {}
        with pytest.raises(SecretError, match="cannot be decrypted"):
            SettingsCipher([NEW]).decrypt(SettingsCipher([OLD]).encrypt("x"))
    finally:
        store.close()


def test_without_configured_keys_one_is_made_and_kept(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"))
    first = SettingsCipher.for_settings(settings)
    token = first.encrypt("hello")
    key_file = tmp_path / "data" / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert SettingsCipher.for_settings(settings).decrypt(token) == "hello"
    env = load_settings(environ={"OMI_RULES_SETTINGS_KEYS": f"{NEW}, {OLD}"})
    assert env.settings_keys == [NEW, OLD]
    with pytest.raises(ConfigError, match="each key must be a Fernet key"):
        SettingsCipher(["not-a-key"])


def test_of_two_racing_first_saves_only_one_lands(tmp_path: Path) -> None:
    """A first save (no admin token) checks for stored settings inside its own write, so
    two saves that both saw none cannot both land; the second is SettingsTaken."""
    store, users = kept(tmp_path, [OLD])

    async def both() -> list[BaseException | None]:
        results = await asyncio.gather(
            users.save("u1", {"url": ("https://a.example.com/x", False)}, first=True),
            users.save("u1", {"token": ("tok-attacker-1", True)}, first=True),
            return_exceptions=True,
        )
        return list(results)

    try:
        first, second = asyncio.run(both())
        assert first is None and isinstance(second, SettingsTaken)
        assert users.stored("u1") == {"url": False}
        asyncio.run(users.save("u1", {"token": ("tok-owner-001", True)}))  # the admin's way
        assert users.stored("u1") == {"url": False, "token": True}
    finally:
        store.close()


def test_made_up_uids_cannot_grow_the_store_or_the_memory_without_bound(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "omi.db"))
    users = UserSettings(store, SettingsCipher([OLD]), lambda: SERVER, max_users=3, cache_users=4)
    try:
        for n in range(3):
            asyncio.run(
                users.save(f"u{n}", {"url": ("https://a.example.com/x", False)}, first=True)
            )
        with pytest.raises(TooManyUsers, match="settings for 3 users"):
            asyncio.run(users.save("u3", {"url": ("https://a.example.com/x", False)}, first=True))
        assert users.stored("u3") == {}
        # the owner (not a first save) is not capped
        asyncio.run(users.save("u3", {"url": ("https://a.example.com/y", False)}))
        for n in range(4, 20):
            asyncio.run(users.disconnect(f"u{n}", forget_events=False))
            assert len(users._generation) <= 4
            assert len(users._cache) <= 4
            users.values(f"u{n}")
        assert users.values("u3").values == {"url": "https://a.example.com/y"}
    finally:
        store.close()


def test_key_rotation_never_overwrites_a_value_saved_meanwhile(tmp_path: Path) -> None:
    store, users = kept(tmp_path, [OLD])
    asyncio.run(users.save("u1", {"token": ("tok-old-value", True)}))
    asyncio.run(users.save("u2", {"token": ("tok-u2-value", True)}))
    store.close()
    store, users = kept(tmp_path, [NEW, OLD])
    try:
        rotated = users.rotated_rows()  # read, encrypted again...
        asyncio.run(users.save("u1", {"token": ("tok-newer-value", True)}))  # ...a save lands
        assert users.write_rotated(rotated) == 1  # only u2's row
        assert users.values("u1").values["token"] == "tok-newer-value"
        assert users.values("u2").values["token"] == "tok-u2-value"
    finally:
        store.close()
