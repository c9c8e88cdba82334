from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import SecretError
from engine.secrets import Secrets
from engine.server.sealed import Sealer, shown

SECRETS = Secrets({"TOKEN": "tok-123456", "LONG": "tok-123456-and-more", "S": "secret"})


def test_a_sealed_value_opens_only_in_its_own_context() -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal({"h": ["Bearer tok-123456"]}, SECRETS, "event-1:rule:0")
    assert "tok-123456" not in str(sealed)
    assert sealer.unseal(sealed, SECRETS, "event-1:rule:0") == {"h": ["Bearer tok-123456"]}
    assert sealer.unseal(sealed, SECRETS, "event-2:rule:0") == sealed
    assert Sealer(b"x" * 32).unseal(sealed, SECRETS, "event-1:rule:0") == sealed


def test_placeholders_written_by_hand_stay_text() -> None:
    sealer = Sealer(b"k" * 32)
    text = "<secret:TOKEN> <secret:TOKEN:" + "a" * 32 + "> <secret:NOPE>"
    assert sealer.unseal(text, SECRETS, "ctx") == text


def test_longest_secret_first_and_a_seal_is_never_searched_again() -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal("tok-123456-and-more / secret", SECRETS, "c")
    assert shown(sealed) == "<secret:LONG> / <secret:S>"
    assert SECRETS.mask("tok-123456-and-more secret") == "<secret:LONG> <secret:S>"


def test_a_secret_unset_since_sealing_is_an_error() -> None:
    sealer = Sealer(b"k" * 32)
    sealed = sealer.seal("tok-123456", SECRETS, "c")
    with pytest.raises(SecretError, match="TOKEN"):
        sealer.unseal(sealed, Secrets({}), "c")


def test_the_key_is_kept_under_the_data_folder(tmp_path: Path) -> None:
    first = Sealer.for_data_dir(tmp_path).seal("tok-123456", SECRETS, "c")
    again = Sealer.for_data_dir(tmp_path)
    assert again.unseal(first, SECRETS, "c") == "tok-123456"
    assert (tmp_path / "seal.key").stat().st_mode & 0o077 == 0


def test_a_users_seal_opens_only_for_the_value_it_replaced() -> None:
    sealer = Sealer(b"k" * 32)
    victim = Secrets({"user.hook": "https://hooks.example.com/victim-1"})
    sealed = sealer.seal({"url": "https://hooks.example.com/victim-1"}, victim, "ev1:r:0")
    assert sealer.unseal(sealed, victim, "ev1:r:0") == {"url": "https://hooks.example.com/victim-1"}
    again = Secrets({"user.hook": "https://hooks.example.com/victim-1"})  # re-entered, same
    assert sealer.unseal(sealed, again, "ev1:r:0")["url"].endswith("victim-1")
    replaced = Secrets({"user.hook": "https://attacker.example.com/mine"})
    with pytest.raises(SecretError, match="user.hook changed since this was stored"):
        sealer.unseal(sealed, replaced, "ev1:r:0")
