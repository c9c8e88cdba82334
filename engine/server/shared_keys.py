"""Receivers sharing a store (PostgreSQL) seal and encrypt with the same keys: a request
one sealed may be sent by another (the sealing key, data/seal key file), and a user's
secret setting one encrypted is read by all (settings_keys, or data/settings.key).

The first receiver to start writes each key's fingerprint (engine.keyfiles) into the
store; a receiver whose keys differ refuses to start and says which key, and how to
share it, rather than dead-lettering the others' actions one by one.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.config import ConfigError
from engine.server.store import Db, Store

_HINT = {
    "sealing": "copy the data folder's sealing key file from the first receiver (or share "
    "the data folder)",
    "settings": "set the same settings_keys on every receiver (or copy data/settings.key)",
}


def check_keys(store: Store, *, sealing: str, settings: Sequence[str]) -> None:
    """Raise ConfigError unless this receiver's keys are those of the store's other
    receivers: `sealing` must be theirs; the settings keys must open what the first of
    theirs encrypts (a rotation puts the new key first, then every receiver's first key
    becomes it as it restarts)."""
    for name, ours in (("sealing", [sealing]), ("settings", list(settings))):

        def claim(db: Db, name: str = name, first: str = ours[0]) -> str:
            db.execute(
                "INSERT INTO key_fingerprints (name, fingerprint) VALUES (?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                [name, first],
            )
            rows = list(db.query("SELECT fingerprint FROM key_fingerprints WHERE name = ?", [name]))
            return str(rows[0]["fingerprint"])

        theirs = store.write_now(claim)
        if theirs not in ours:
            raise ConfigError(
                f"this receiver's {name} key is not the one the other receivers of this "
                f"database use: {_HINT[name]}"
            )
        if theirs != ours[0]:  # a rotation: ours is the new first key

            def rotate(db: Db, name: str = name, first: str = ours[0]) -> None:
                db.execute(
                    "UPDATE key_fingerprints SET fingerprint = ? WHERE name = ?", [first, name]
                )

            store.write_now(rotate)
