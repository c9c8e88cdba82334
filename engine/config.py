"""Server configuration: defaults that work for `make run`, then a YAML file, then
environment variables (`OMI_RULES_<NAME>`), then command-line flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml
from msgspec import Struct

from engine.errors import OmiRulesError


class RetryPolicy(Struct, forbid_unknown_fields=True):
    max_attempts: int = 8  # then the action becomes a dead letter
    base_delay: float = 1.0  # seconds before the 2nd attempt; doubles each time
    max_delay: float = 600.0
    jitter: float = 0.25  # +- this fraction of the delay


class Settings(Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8000
    db: str = "data/omi-rules.db"
    rules: str = "rules"
    data_dir: str = "data"
    secrets: str | None = None  # secrets file
    token: str | None = None  # shared token (query `token` or header) for setups without signing
    signing_secret: str | None = None  # Omi's whsec_... secret: verify X-Omi-Signature
    signature_tolerance: float = 300.0
    max_body_bytes: int = 2 * 1024 * 1024
    dedupe_window: float = 24 * 3600.0  # seconds an Omi retry is recognized as a duplicate
    session_idle: float = 120.0  # a transcript session ends after this quiet period
    watch_rules: bool = True
    workers_per_connector: int = 4
    poll_interval: float = 0.5
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    outbound_allow: list[str] = msgspec.field(default_factory=list)
    outbound_deny: list[str] = msgspec.field(default_factory=list)
    keep_rejections: int = 200
    # bounds on the work one event may cause (engine.limits; README "Limits")
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


def _env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    fields = {f.name: f for f in msgspec.structs.fields(Settings)}
    for name, info in fields.items():
        if name == "retry":
            continue
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None or raw == "":
            continue
        if info.type in (list[str],):
            values[name] = [part.strip() for part in raw.split(",") if part.strip()]
        else:
            values[name] = raw
    for name in ("max_attempts", "base_delay", "max_delay", "jitter"):
        raw = environ.get(f"{ENV_PREFIX}RETRY_{name.upper()}")
        if raw:
            values.setdefault("retry", {})[name] = raw
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
    if file:
        try:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"config file {file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: expected a mapping")
        data.update(loaded)
    env = _env_values(environ)
    if "retry" in env:
        data["retry"] = {**data.get("retry", {}), **env.pop("retry")}
    data.update(env)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"configuration: {exc}") from None
