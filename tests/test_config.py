"""Settings: defaults, a YAML file, OMI_RULES_* variables, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, load_settings
from tests.conftest import ROOT
from tests.server_helpers import server_settings


def test_defaults_work_for_make_run() -> None:
    settings = load_settings(environ={})
    assert (settings.host, settings.port, settings.db, settings.rules) == (
        "127.0.0.1",
        8000,
        "data/omi-rules.db",
        "rules",
    )


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    config = tmp_path / "omi.yaml"
    config.write_text(
        "port: 9000\ntoken: from-file\nretry: {max_attempts: 3}\naudio: {speech_start: 0.5}\n"
    )
    environ = {
        "OMI_RULES_TOKEN": "from-env",
        "OMI_RULES_AUDIO_SPEECH_END": "10",
        "OMI_RULES_RETRY_BASE_DELAY": "0.5",
        "OMI_RULES_OUTBOUND_DENY": "10.0.0.0/8, 192.168.0.0/16",
    }
    settings = load_settings(config, environ=environ, port=9100)
    assert settings.port == 9100
    assert settings.token == "from-env"
    assert settings.retry.max_attempts == 3
    assert settings.retry.base_delay == 0.5
    assert (settings.audio.speech_start, settings.audio.speech_end) == (0.5, 10.0)
    assert settings.outbound_deny == ["10.0.0.0/8", "192.168.0.0/16"]


def test_bad_values_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="port"):
        load_settings(environ={"OMI_RULES_PORT": "eighty"})
    config = tmp_path / "bad.yaml"
    config.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_settings(config, environ={})
    config.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(config, environ={})


def test_omi_rules_yaml_in_the_current_folder_is_read_when_no_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "omi-rules.yaml").write_text("port: 9100\nretention_days: 7\n")
    named = tmp_path / "named.yaml"
    named.write_text("port: 9200\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).port == 9100
    assert load_settings(environ={"OMI_RULES_PORT": "9300"}).port == 9300
    # a named file replaces the folder's file (it is not merged with it)
    assert load_settings(named, environ={}).retention_days == 30.0
    assert load_settings(environ={"OMI_RULES_CONFIG": str(named)}).port == 9200
    (tmp_path / "omi-rules.yaml").unlink()
    assert load_settings(environ={}).port == 8000


def test_a_missing_secrets_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "omi-rules.yaml"
    config.write_text("secrets: secrets.env\n")
    with pytest.raises(ConfigError, match=f"secrets file {tmp_path / 'secrets.env'} does not"):
        load_settings(config, environ={})
    with pytest.raises(ConfigError, match="secrets file nowhere.env does not exist"):
        load_settings(environ={"OMI_RULES_SECRETS": "nowhere.env"})


def test_test_servers_ignore_an_omi_rules_yaml_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "omi-rules.yaml").write_text("port: 9100\nsecrets: nowhere.env\n")
    monkeypatch.chdir(tmp_path)
    assert server_settings(tmp_path).port == 8000
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "/omi-rules.yaml" in gitignore


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("MAX_STREAMS", "0", "Expected `int` >= 1 - at `$.audio.max_streams`"),
        ("MAX_STREAMS_PER_UID", "0", "Expected `int` >= 1 - at `$.audio.max_streams_per_uid`"),
        ("SPEECH_START", "0", "Expected `float` > 0.0 - at `$.audio.speech_start`"),
        ("SPEECH_END", "-1", "Expected `float` > 0.0 - at `$.audio.speech_end`"),
        ("MAX_UTTERANCE", "0", "Expected `float` > 0.0 - at `$.audio.max_utterance`"),
        ("STREAM_IDLE", "0", "Expected `float` > 0.0 - at `$.audio.stream_idle`"),
        ("KEEP_DAYS", "-1", "Expected `float` >= 0.0 - at `$.audio.keep_days`"),
        ("MAX_CHUNK", "0", "Expected `float` > 0.0 - at `$.audio.max_chunk`"),
    ],
)
def test_audio_settings_out_of_range_are_refused_at_load(
    name: str, value: str, reason: str
) -> None:
    """max_streams: 0 failed every audio chunk; speech_start: 0 made silence speech."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={f"OMI_RULES_AUDIO_{name}": value})
    assert str(caught.value) == f"configuration: {reason}"
    assert load_settings(environ={"OMI_RULES_AUDIO_KEEP_DAYS": "0"}).audio.keep_days == 0


def test_a_database_url_in_a_config_file_is_not_taken_for_a_path(tmp_path: Path) -> None:
    config = tmp_path / "omi-rules.yaml"
    config.write_text("db: postgresql://omi@db.internal:5432/omirules\nrules: rules\n")
    settings = load_settings(config, environ={})
    assert settings.db == "postgresql://omi@db.internal:5432/omirules"
    assert settings.rules == str(tmp_path / "rules")  # a path still is
