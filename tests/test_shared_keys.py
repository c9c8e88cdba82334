"""Receivers sharing a store use the same keys (engine.server.shared_keys): checked by
fingerprint at start, a rotation moves forward only."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.config import ConfigError
from engine.server.shared_keys import check_keys
from engine.server.store import Store


def test_the_first_receiver_sets_the_keys_and_the_others_must_match(store: Store) -> None:
    check_keys(store, sealing="s1", settings=["k1"])
    check_keys(store, sealing="s1", settings=["k1"])  # the same keys again: fine
    with pytest.raises(ConfigError, match="sealing key is not the one"):
        check_keys(store, sealing="s2", settings=["k1"])
    with pytest.raises(ConfigError, match="settings key is not the one"):
        check_keys(store, sealing="s1", settings=["k9"])


def test_a_settings_key_rotation_moves_forward_only(store: Store) -> None:
    check_keys(store, sealing="s", settings=["k1"])
    check_keys(store, sealing="s", settings=["k2", "k1"])  # the new key first: rotated
    check_keys(store, sealing="s", settings=["k2"])  # the old key dropped: fine
    # a receiver started with a stale config (the old key first) would re-encrypt every
    # user secret with it, which receivers on ["k2"] cannot open: refused
    with pytest.raises(ConfigError, match="replaced by a newer one"):
        check_keys(store, sealing="s", settings=["k1", "k2"])
    with pytest.raises(ConfigError, match="replaced by a newer one"):
        check_keys(store, sealing="s", settings=["k1"])
    (row,) = store.query("SELECT fingerprint FROM key_fingerprints WHERE name = 'settings'")
    assert row["fingerprint"] == "k2"


def test_serve_with_other_keys_says_which_and_exits(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line naming the key file, exit 1: not the traceback of a failed startup."""
    store = Store(postgres_url)
    try:
        check_keys(store, sealing="another receiver's", settings=["k"])
    finally:
        store.close()
    (tmp_path / "rules").mkdir()
    monkeypatch.setenv("OMI_RULES_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["serve", "--db", postgres_url, "--rules", "rules"])
    assert result.exit_code == 1
    assert "sealing key is not the one the other receivers" in result.output
    assert "copy seal.key" in result.output and "Traceback" not in result.output
