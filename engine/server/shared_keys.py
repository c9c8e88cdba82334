"""Receivers sharing a store (PostgreSQL) seal and encrypt with the same keys: a request
one sealed may be sent by another (the sealing key, data/seal key file), and a user's
secret setting one encrypted is read by all (settings_keys, or data/settings.key).

The first receiver to start writes each key's fingerprint (engine.keyfiles) into the
store; a receiver whose keys differ refuses to start and says which key, and how to
share it, rather than dead-lettering the others' actions one by one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from engine.config import ConfigError
from engine.server.store import Db, Store

_HINT = {
    "sealing": "copy seal.key from the first receiver's data folder into this one's (or share "
    "the data folder)",
    "settings": "set the same settings_keys on every receiver (or copy settings.key from the "
    "first receiver's data folder)",
}


def check_keys(store: Store, *, sealing: str, settings: Sequence[str]) -> None:
    """Raise ConfigError unless this receiver's keys are those of the store's other
    receivers: `sealing` must be theirs; the settings keys must open what the first of
    theirs encrypts. A rotation puts a new key first: the first receiver to start with it
    makes it the store's (the old one is then retired), and a receiver whose first key is
    a retired one (a stale config, rolling the rotation back) is refused."""
    for name, ours in (("sealing", [sealing]), ("settings", list(settings))):
        problem = store.write_now(functools.partial(_check, name=name, ours=ours))
        if problem:
            raise ConfigError(f"this receiver's {name} key {problem}: {_HINT[name]}")


def _check(db: Db, *, name: str, ours: list[str]) -> str | None:
    """In one transaction: why `ours` cannot be used for `name`, or None (then the store's
    current fingerprint is ours[0])."""
    retired_prefix = f"{name}:retired:"
    db.execute(
        "INSERT INTO key_fingerprints (name, fingerprint) VALUES (?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        [name, ours[0]],
    )
    rows = {row["name"]: row["fingerprint"] for row in db.query(KEYS_SQL)}
    current = rows[name]
    retired = {fp for key, fp in rows.items() if key.startswith(retired_prefix)}
    if ours[0] == current:
        return None
    if ours[0] in retired:
        return "was replaced by a newer one (put the new key first, as the others have)"
    if current not in ours:
        return "is not the one the other receivers of this database use"
    db.execute(  # a rotation: ours is the new first key, theirs retires
        "INSERT INTO key_fingerprints (name, fingerprint) VALUES (?, ?) "
        "ON CONFLICT (name) DO NOTHING",
        [retired_prefix + current, current],
    )
    db.execute("UPDATE key_fingerprints SET fingerprint = ? WHERE name = ?", [ours[0], name])
    return None


KEYS_SQL = "SELECT name, fingerprint FROM key_fingerprints"
