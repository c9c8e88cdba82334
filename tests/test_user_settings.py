"""Per-user settings at rest (engine.server.user_settings, engine.server.setting_keys):
Fernet encryption with key rotation, the in-memory cache forgotten on every write, and the
secrets a user's values add (`user.NAME`, sealed and masked like the server's)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from engine.config import ConfigError, load_settings
from engine.errors import SecretError, SettingsTaken, TooManyUsers
from engine.secrets import Secrets
from engine.server.sealed import Sealer
from engine.server.setting_keys import KEY_FILE, SettingsCipher
from engine.server.store import Db, Store
from engine.server.user_settings import UserSettings

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def kept(target: str, keys: list[str]) -> tuple[Store, UserSettings]:
    store = Store(target)
    return store, UserSettings(store, SettingsCipher(keys), lambda: SERVER)


SERVER = Secrets({"HOOK": "https://hooks.example.com/server"})


def test_a_secret_is_stored_encrypted_and_read_back(store_target: str) -> None:
    store, users = kept(store_target, [OLD])
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


def test_the_users_secrets_are_sealed_masked_and_opened_as_user_names(store_target: str) -> None:
    store, users = kept(store_target, [OLD])
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


def test_a_write_forgets_the_cached_values(store_target: str) -> None:
    store, users = kept(store_target, [OLD])
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


def test_keys_rotate_the_first_encrypts_all_decrypt(store_target: str) -> None:
    store, users = kept(store_target, [OLD])
    asyncio.run(users.save("u1", {"token": ("tok-3e9a1c77", True)}))
    store.close()
    store, users = kept(store_target, [NEW, OLD])
    try:
        assert users.values("u1").values["token"] == "tok-3e9a1c77"  # the old key decrypts
        assert users.rotate_all() == 1
    finally:
        store.close()
    store, users = kept(store_target, [NEW])  # the old key is gone
    try:
        assert users.values("u1").values["token"] == "tok-3e9a1c77"
    finally:
        store.close()
    store, users = kept(store_target, [Fernet.generate_key().decode()])
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


def test_of_two_racing_first_saves_only_one_lands(store_target: str) -> None:
    """A first save (no admin token) checks for stored settings inside its own write, so
    two saves that both saw none cannot both land; the second is SettingsTaken."""
    store, users = kept(store_target, [OLD])

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


def test_made_up_uids_cannot_grow_the_store_or_the_memory_without_bound(store: Store) -> None:
    users = UserSettings(store, SettingsCipher([OLD]), lambda: SERVER, max_users=3, cache_users=4)
    for n in range(3):
        asyncio.run(users.save(f"u{n}", {"url": ("https://a.example.com/x", False)}, first=True))
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


def test_key_rotation_never_overwrites_a_value_saved_meanwhile(store_target: str) -> None:
    store, users = kept(store_target, [OLD])
    asyncio.run(users.save("u1", {"token": ("tok-old-value", True)}))
    asyncio.run(users.save("u2", {"token": ("tok-u2-value", True)}))
    store.close()
    store, users = kept(store_target, [NEW, OLD])
    try:
        rotated = users.rotated_rows()  # read, encrypted again...
        asyncio.run(users.save("u1", {"token": ("tok-newer-value", True)}))  # ...a save lands
        assert users.write_rotated(rotated) == 1  # only u2's row
        assert users.values("u1").values["token"] == "tok-newer-value"
        assert users.values("u2").values["token"] == "tok-u2-value"
    finally:
        store.close()


def waiting_on_a_lock(store: Store) -> bool:
    rows = store.query(
        "SELECT COUNT(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(rows[0]["n"])


def test_of_two_receivers_racing_first_saves_only_one_lands(postgres_url: str) -> None:
    """Two stores on one PostgreSQL database (two receivers): the first's first save is
    held uncommitted while the second's runs. The second must wait for it and then be
    SettingsTaken; it must neither land beside it nor overwrite it."""
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        users_a = UserSettings(first, SettingsCipher([OLD]), lambda: SERVER)
        users_b = UserSettings(second, SettingsCipher([OLD]), lambda: SERVER)
        gate, holding, let_go = threading.Event(), threading.Event(), threading.Event()

        def hold(_db: Db) -> None:
            holding.set()
            if not let_go.wait(timeout=30):
                raise AssertionError("never let go")

        async def race() -> BaseException | None:
            first.submit(lambda _db: gate.wait(timeout=30))  # the save and hold share a batch
            saving = asyncio.create_task(
                users_a.save("u1", {"url": ("https://a.example.com/x", False)}, first=True)
            )
            await asyncio.sleep(0)  # the task runs up to its store.write: the save is queued
            held = first.submit(hold)
            gate.set()
            assert await asyncio.to_thread(holding.wait, 30)
            other = asyncio.create_task(
                users_b.save("u1", {"url": ("https://evil.example.com/", False)}, first=True)
            )
            # the second lands (the race lost) or waits for the first's lock
            for _poll in range(400):
                if other.done() or await second.read(waiting_on_a_lock):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the second save neither landed nor waited")
            let_go.set()
            await saving
            await asyncio.to_thread(held.result, 10)
            try:
                await other
            except SettingsTaken as taken:
                return taken
            return None

        assert isinstance(asyncio.run(race()), SettingsTaken)
        assert users_a.values("u1").values == {"url": "https://a.example.com/x"}
    finally:
        first.close()
        second.close()
