"""Per-user settings: what each Omi user entered on the setup page (`GET /setup?uid=...`).

Rows of `user_settings` (uid, name, value, secret). A secret setting's value is stored
encrypted (engine.server.setting_keys); the others as text. The rules thread reads a user's
values for every event a rule with `settings:` decides, so they are kept in memory (at most
CACHE_USERS users, least recently used dropped) and a write forgets the user's entry.

A user's secret settings reach the rest of the engine as secrets named `user.NAME`
(`UserValues.secrets`): a rendered request is sealed with them before it is stored, and the
deliverer opens the seals with the same user's values, so the database never holds one in
plain text (engine.server.sealed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from engine.errors import SecretError, SettingsTaken, TooManyUsers
from engine.runtime.user_values import UserValues, secret_name
from engine.secrets import Secrets
from engine.server.setting_keys import SettingsCipher
from engine.server.store import Db, Store

log = logging.getLogger("omi_rules.user_settings")
CACHE_USERS = 10_000
MAX_USERS = 100_000  # uids with stored settings: a made-up uid per save cannot fill the disk
# first saves take this lock in a shared store: one at a time, so "no settings yet" and the
# user cap are checked against every other receiver's committed saves (store_postgres)
FIRST_SAVE_LOCK = 0x6F6D6975


class UserSettings:
    def __init__(
        self,
        store: Store,
        cipher: SettingsCipher,
        secrets: Callable[[], Secrets],
        declared_secret: Callable[[], frozenset[str]] = frozenset,
        max_users: int = MAX_USERS,
        cache_users: int = CACHE_USERS,
    ) -> None:
        self.max_users = max_users
        self.cache_users = cache_users
        self.store = store
        self.cipher = cipher
        self.secrets = secrets
        # names any loaded rule declares `secret: true`: such a value is a secret whatever
        # its row says (it may have been saved before the rule said so)
        self.declared_secret = declared_secret
        self._cache: OrderedDict[str, UserValues] = OrderedDict()
        # uid -> writes seen (a read racing one is not kept); cleared past cache_users uids,
        # which starts a new epoch (a read racing the clearing is not kept either)
        self._generation: dict[str, int] = {}
        self._epoch = 0
        self._lock = threading.Lock()

    # -- reading (blocking: the rules thread, or Store.read) -----------------------------
    def values(self, uid: str) -> UserValues:
        secrets = self.secrets()
        with self._lock:
            cached = self._cache.get(uid)
            if cached is not None and cached.base is secrets:
                self._cache.move_to_end(uid)
                return cached
            generation = (self._epoch, self._generation.get(uid, 0))
        loaded = self._load(uid, secrets)
        with self._lock:
            if (self._epoch, self._generation.get(uid, 0)) == generation:
                self._cache[uid] = loaded
                while len(self._cache) > self.cache_users:
                    self._cache.popitem(last=False)
        return loaded

    def _load(self, uid: str, secrets: Secrets) -> UserValues:
        values: dict[str, str] = {}
        secret_names: set[str] = set()
        declared = self.declared_secret()
        for row in self.store.query(
            "SELECT name, value, secret FROM user_settings WHERE uid = ?", (uid,)
        ):
            value = row["value"]
            if row["secret"]:
                try:
                    value = self.cipher.decrypt(value)
                except SecretError:
                    continue  # as if unset: the user may enter it again; counted at start
            if row["secret"] or row["name"] in declared:
                secret_names.add(row["name"])
            values[row["name"]] = value
        merged = secrets.with_values({secret_name(n): values[n] for n in secret_names})
        return UserValues(uid, values, frozenset(secret_names), merged, secrets)

    def stored(self, uid: str) -> dict[str, bool]:
        """Which settings `uid` has set: name -> is it secret (the values stay here). A
        secret no key opens is not set: the rules skip it, and the user may enter it again."""
        return {
            row["name"]: bool(row["secret"])
            for row in self.store.query(
                "SELECT name, value, secret FROM user_settings WHERE uid = ?", (uid,)
            )
            if self._readable(row)
        }

    def _readable(self, row: Mapping[str, object]) -> bool:
        if not row["secret"]:
            return True
        try:
            self.cipher.decrypt(str(row["value"]))
        except SecretError:
            return False
        return True

    def unreadable(self) -> int:
        """How many stored secrets no key of settings_keys opens (logged at start). Blocking."""
        rows = self.store.query("SELECT value, secret FROM user_settings WHERE secret = 1")
        return sum(1 for row in rows if not self._readable(row))

    # -- writing ---------------------------------------------------------------------------
    def forget(self, uid: str) -> None:
        with self._lock:
            self._cache.pop(uid, None)
            self._generation[uid] = self._generation.get(uid, 0) + 1
            if len(self._generation) > self.cache_users:
                self._generation.clear()
                self._epoch += 1

    async def save(
        self, uid: str, values: Mapping[str, tuple[str, bool]], *, first: bool = False
    ) -> None:
        """Set `values` (name -> (value, secret)) for `uid`; a secret is encrypted here.
        With `first`, only while `uid` has no stored setting at all, checked in the same
        write (SettingsTaken otherwise): two racing first saves cannot both land."""
        now = time.time()
        rows = [
            {
                "uid": uid,
                "name": name,
                "value": self.cipher.encrypt(value) if secret else value,
                "secret": int(secret),
                "updated_at": now,
            }
            for name, (value, secret) in values.items()
        ]

        def write(db: Db) -> None:
            if first:
                # another receiver's first save (PostgreSQL) is waited for, so this one
                # sees its rows: else both land, or the later overwrites the earlier
                if lock := self.store.dialect.lock_until_commit:
                    db.execute(lock, [FIRST_SAVE_LOCK])
                held = db.execute(
                    "SELECT value, secret FROM user_settings WHERE uid = ?", [uid]
                ).fetchall()
                if any(
                    self._readable({"value": value, "secret": secret}) for value, secret in held
                ):
                    raise SettingsTaken(uid)
                # only secrets no key opens (the user is asked again): replaced
                db.execute("DELETE FROM user_settings WHERE uid = ?", [uid])
                (users,) = db.execute("SELECT COUNT(DISTINCT uid) FROM user_settings").fetchone()
                if users >= self.max_users:
                    raise TooManyUsers(self.max_users)
            db.executemany(
                "INSERT INTO user_settings (uid, name, value, secret, updated_at) "
                "VALUES (:uid, :name, :value, :secret, :updated_at) ON CONFLICT (uid, name) "
                "DO UPDATE SET value = excluded.value, secret = excluded.secret, "
                "updated_at = excluded.updated_at",
                rows,
            )

        self.forget(uid)
        try:
            await self.store.write(write)
        finally:
            self.forget(uid)

    def disconnect_write(self, uid: str, *, forget_events: bool) -> Callable[[Db], tuple[int, int]]:
        """The write removing `uid`'s settings and, with `forget_events`, its stored events,
        their actions and its rejections; it returns (settings removed, events removed).
        Receiver.disconnect submits it with the live-session rows, from the rules thread."""

        def write(db: Db) -> tuple[int, int]:
            removed = db.execute("DELETE FROM user_settings WHERE uid = ?", [uid]).rowcount
            events = 0
            if forget_events:
                # actions first: they refer to their events
                db.execute(
                    "DELETE FROM actions WHERE event_id IN (SELECT id FROM events WHERE uid = ?)",
                    [uid],
                )
                events = db.execute("DELETE FROM events WHERE uid = ?", [uid]).rowcount
                db.execute("DELETE FROM rejections WHERE uid = ?", [uid])
            self.forget(uid)  # inside the write: no read after it can cache the old values
            return int(removed), int(events)

        return write

    async def disconnect(self, uid: str, *, forget_events: bool) -> tuple[int, int]:
        """Remove `uid`'s settings (and events, with `forget_events`) on their own."""
        self.forget(uid)
        try:
            result: tuple[int, int] = await self.store.write(
                self.disconnect_write(uid, forget_events=forget_events)
            )
        finally:
            self.forget(uid)
        return result

    def rules_changed(self) -> None:
        """Forget every cached user: which settings are secret may have changed."""
        with self._lock:
            self._cache.clear()

    def encrypt_declared(self) -> int:
        """Encrypt every stored plain value whose name a loaded rule now declares secret (at
        start); returns how many were rewritten. Blocking."""
        declared = sorted(self.declared_secret())
        if not declared:
            return 0
        marks = ",".join("?" * len(declared))
        rows = self.store.query(
            # S608: only "?" marks are joined in
            f"SELECT uid, name, value FROM user_settings WHERE secret = 0 AND name IN ({marks})",
            tuple(declared),
        )
        changed = [
            {
                "uid": r["uid"],
                "name": r["name"],
                "old": r["value"],
                "value": self.cipher.encrypt(r["value"]),
            }
            for r in rows
        ]

        def write(db: Db) -> None:
            db.executemany(
                "UPDATE user_settings SET value = :value, secret = 1 "
                "WHERE uid = :uid AND name = :name AND secret = 0 AND value = :old",
                changed,
            )

        if changed:
            self.store.write_now(write)
        self.rules_changed()
        return len(changed)

    def rotate_all(self) -> int:
        """Encrypt every stored secret setting again with the first key (at start, so an old
        key can be retired); returns how many were rewritten. Blocking. With one key there is
        nothing to rotate."""
        if not self.cipher.rotating:
            return 0
        return self.write_rotated(self.rotated_rows())

    def rotated_rows(self) -> list[dict[str, str]]:
        """Each stored secret encrypted with the first key, beside the text it replaces."""
        rows = self.store.query("SELECT uid, name, value FROM user_settings WHERE secret = 1")
        changed = []
        for row in rows:
            try:
                rotated = self.cipher.rotate(row["value"])
            except SecretError:
                continue
            changed.append(
                {"uid": row["uid"], "name": row["name"], "old": row["value"], "value": rotated}
            )
        return changed

    def write_rotated(self, changed: list[dict[str, str]]) -> int:
        """Write `rotated_rows()`, each only where the row still holds the text it was made
        from (a value saved since is newer: kept, and logged). Returns rows rewritten."""

        def write(db: Db) -> int:
            done = 0
            for row in changed:
                done += db.execute(
                    "UPDATE user_settings SET value = :value "
                    "WHERE uid = :uid AND name = :name AND value = :old",
                    row,
                ).rowcount
            return done

        done: int = self.store.write_now(write) if changed else 0
        if done < len(changed):
            log.info("key rotation left %d user setting(s) saved meanwhile", len(changed) - done)
        with self._lock:
            self._cache.clear()
        return done
