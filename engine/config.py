"""Server configuration: defaults that work for `make run`, then a YAML file (`--config`,
`OMI_RULES_CONFIG`, or `omi-rules.yaml` in the current folder, as `omi-rules init` writes
it), then environment variables (`OMI_RULES_<NAME>`), then command-line flags.

With a config file, the relative paths it gives, and the defaults of those it leaves out
(`db`, `rules`, `data_dir`, `secrets`: PATH_FIELDS), are taken from the file's folder, so
`serve --config /srv/x/omi-rules.yaml` run anywhere uses /srv/x/rules; paths from the
environment or flags stay relative to the current folder. A secrets file that does not
exist is a ConfigError."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml
from msgspec import Meta, Struct

from engine.errors import OmiRulesError


class RetryPolicy(Struct, forbid_unknown_fields=True):
    max_attempts: int = 8  # then the action becomes a dead letter
    base_delay: float = 1.0  # seconds before the 2nd attempt; doubles each time
    max_delay: float = 600.0
    jitter: float = 0.25  # +- this fraction of the delay


MiB = 1024 * 1024


class BodyLimits(Struct, forbid_unknown_fields=True):
    """Largest body each webhook takes, in bytes; anything larger is refused (413) and
    recorded in /api/rejections whatever its size."""

    memory: int = 32 * MiB  # a memory may carry photos (OpenGlass) as base64
    transcript: int = 4 * MiB
    audio: int = 12 * MiB  # 30 s at 192 kHz, 16-bit mono is 11 MiB
    day_summary: int = 4 * MiB


Positive = Annotated[float, Meta(gt=0)]
AtLeastOne = Annotated[int, Meta(ge=1)]


class AudioSettings(Struct, forbid_unknown_fields=True):
    """Voice activity in audio streams (engine.runtime.audio_streams): when speech starts
    and ends, and what is kept of it. Checked when the configuration loads: a zero or
    negative value is refused (max_streams 0 failed every chunk; speech_start 0 made
    digital silence an utterance)."""

    speech_start: Positive = 0.3  # seconds of unbroken speech that start an utterance
    speech_end: Positive = 1.5  # seconds of silence that end it
    max_utterance: Positive = 60.0  # seconds: a longer utterance ends there, a new one starts
    max_streams: AtLeastOne = 256  # streams (uid, session) followed at once; the oldest is dropped
    # streams of one uid at once; its own oldest is dropped first (made-up session ids
    # must not end other users' utterances)
    max_streams_per_uid: AtLeastOne = 16
    stream_idle: Positive = 300.0  # a stream not heard for this long is dropped (speech ends)
    # utterance WAVs (data/audio/utterances) older than this are deleted; 0 keeps them
    keep_days: Annotated[float, Meta(ge=0)] = 7.0
    # seconds of audio one chunk may hold (bytes / 2 / sample_rate); a longer one gets 413
    max_chunk: Positive = 60.0


class Settings(Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    db: str = "data/omi-rules.db"
    rules: str = "rules"
    data_dir: str = "data"
    secrets: str | None = None  # secrets file
    token: str | None = None  # shared token (query `token` or header) for setups without signing
    admin_token: str | None = None  # for /api, /schema, /ui; made under data_dir when unset
    # Fernet keys for per-user secret settings: the first encrypts, all decrypt (rotation);
    # unset, one is made under data_dir (engine.server.setting_keys)
    settings_keys: list[str] = msgspec.field(default_factory=list)
    allowed_hosts: list[str] = msgspec.field(default_factory=list)  # beside loopback names
    signing_secret: str | None = None  # Omi's whsec_... secret: verify X-Omi-Signature
    signature_tolerance: float = 300.0
    body_limits: BodyLimits = msgspec.field(default_factory=BodyLimits)
    dedupe_window: float = 24 * 3600.0  # seconds an Omi retry is recognized as a duplicate
    answer_deadline: float = 10.0  # a write not begun by then is answered 503 (Omi waits 15 s)
    session_idle: float = 120.0  # a transcript session ends after this quiet period
    audio: AudioSettings = msgspec.field(default_factory=AudioSettings)
    watch_rules: bool = True
    workers_per_connector: int = 4  # delivery slots: this many per installed connector
    workers_per_target: int = 4  # at most this many in flight to one host (or local connector)
    delivery_deadline: float = 30.0  # seconds an attempt may take in all, when it sets no timeout
    breaker_failures: int = 5  # consecutive retryable failures that open a target's circuit
    breaker_cooloff: float = 30.0  # seconds an open target waits before a probe
    poll_interval: float = 0.5
    # seconds an action being sent stays this receiver's: renewed while it sends; once it
    # runs out (the receiver died) another receiver of a shared store sends it again
    outbox_lease: float = 60.0
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    outbound_allow: list[str] = msgspec.field(default_factory=list)
    outbound_deny: list[str] = msgspec.field(default_factory=list)
    # hosts a URL from payload text may name (`*.example.com` for subdomains); hosts the
    # rules and secrets name are always allowed
    outbound_allow_hosts: list[str] = msgspec.field(default_factory=list)
    keep_rejections: int = 200
    retention_days: float = 30.0  # events, actions and rejections older than this are deleted
    # bounds on the work one event may cause (engine.runtime.limits; README "Limits")
    session_max_per_uid: int = 16
    session_max_total: int = 256
    session_max_segments: int = 2000
    session_max_bytes: int = 256 * 1024
    segment_max_chars: int = 8192
    match_max_text: int = 64 * 1024
    match_budget_ms: float = 50.0
    event_budget_ms: float = 1000.0
    render_budget_ms: float = 100.0
    for_each_limit: int = 50


class ConfigError(OmiRulesError):
    """The configuration file or an OMI_RULES_* variable is wrong."""


ENV_PREFIX = "OMI_RULES_"
FOLDER_CONFIG = "omi-rules.yaml"  # read from the current folder when no file is named
PATH_FIELDS = ("db", "rules", "data_dir", "secrets")  # relative: to the config file's folder
# nested settings: name -> (name, env prefix of its fields, struct); OMI_RULES_RETRY_MAX_DELAY
NESTED: dict[str, tuple[str, str, type[Struct]]] = {
    "retry": ("retry", "RETRY_", RetryPolicy),
    "body_limits": ("body_limits", "BODY_LIMIT_", BodyLimits),
    "audio": ("audio", "AUDIO_", AudioSettings),
}


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    for name, info in fields.items():
        if name in NESTED:
            continue
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        if info.type in (list[str],):
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            values[name] = raw
    for group, prefix, struct in NESTED.values():
        for field in msgspec.structs.fields(struct):
            raw = environ.get(f"{ENV_PREFIX}{prefix}{field.name.upper()}")
            if raw:
                values.setdefault(group, {})[field.name] = raw
    return values


def load_settings(
    file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from defaults, the config file, the environment and `overrides`, in order."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    file = file or environ.get(ENV_PREFIX + "CONFIG")
    if not file and Path(FOLDER_CONFIG).is_file():
        file = FOLDER_CONFIG
    if file:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: expected a mapping")
        data.update(loaded)
        if Path(file) != Path(os.devnull):  # tests: no file at all
            _from_folder(data, Path(file).parent)
    env = _env_values(environ)
    for group in NESTED:
        if group in env:
            data[group] = {**data.get(group, {}), **env.pop(group)}
    data.update(env)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"configuration: {exc}") from None
    if settings.secrets and not Path(settings.secrets).is_file():
        raise ConfigError(f"secrets file {settings.secrets} does not exist")
    return settings


def _from_folder(data: dict[str, Any], folder: Path) -> None:
    """The path fields of a config file's `data` (given or default) under `folder`."""
    if folder == Path():
        return
    defaults = Settings()
    for name in PATH_FIELDS:
        value = data.get(name, getattr(defaults, name))
        if (
            isinstance(value, str)
            and value
            and "://" not in value
            and not Path(value).is_absolute()
        ):
            data[name] = str(folder / value)  # a db URL (postgresql://) is not a path
