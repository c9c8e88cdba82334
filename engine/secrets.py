"""Secrets: from `OMI_RULES_SECRET_<NAME>` variables or a secrets file, never from rules.

Templates reach them as `secrets.NAME`. Anything printed or stored for people (dry-run,
history, logs, the editor) goes through `mask`, which replaces each secret's value with
`<secret:NAME>`. In dry-run every secret renders as that same placeholder, set or not, so a
rule can be tried before its secrets exist and a dry-run never shows a secret's text.
"""

from __future__ import annotations

import io
import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from engine.config import ConfigError
from engine.errors import SecretError

ENV_PREFIX = "OMI_RULES_SECRET_"
MIN_MASKED_LENGTH = 3  # shorter values would garble unrelated text


def placeholder(name: str) -> str:
    return f"<secret:{name}>"


def placeholder_name(text: str) -> str | None:
    """The secret name when `text` is exactly an unset secret's placeholder."""
    text = text.strip()
    if text.startswith("<secret:") and text.endswith(">"):
        return text[len("<secret:") : -1]
    return None


def _read_file(path: Path) -> dict[str, str]:
    """A YAML mapping, or else a dotenv file (`NAME=value`, read by python-dotenv: quotes,
    `export`, `# comments`). A line dotenv cannot read is a ConfigError naming the file and
    line, never skipped: a half-read file would leave a secret silently unset."""
    text = path.read_text(encoding="utf-8")
    if not path.name.endswith(".env"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        if isinstance(data, dict):
            return {str(k): str(v) for k, v in data.items() if v is not None}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:  # the line's text is not quoted back: it may hold a secret
            raise ConfigError(
                f"secrets file {path}, line {binding.original.line}: not NAME=value "
                "(an unclosed quote?)"
            )
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)  # `$` stays literal
    return {name: value for name, value in values.items() if value is not None}


class Secrets:
    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        # surrounding whitespace (a pasted token's newline) is never part of a secret: kept,
        # it would be sent in one place and stripped in another, and escape masking
        stripped = {k: str(v).strip() for k, v in (values or {}).items()}
        self._values = {k: v for k, v in stripped.items() if v != ""}
        self._pattern: re.Pattern[str] | None = None
        self._names: dict[str, str] = {}  # secret value -> name

    @classmethod
    def load(
        cls, file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Secrets:
        """Secrets from the file (`--secrets` or OMI_RULES_SECRETS), then the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        file = file or environ.get("OMI_RULES_SECRETS")
        if file:
            values.update(_read_file(Path(file)))
        for key, value in environ.items():
            if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
                values[key[len(ENV_PREFIX) :]] = value
        return cls(values)

    def has(self, name: str) -> bool:
        return name in self._values

    def get(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise SecretError(
                f"secret {name} is not set (set {ENV_PREFIX}{name} or add it to the secrets file)"
            ) from None

    def plain_values(self) -> list[str]:
        """Every secret's value, for the engine's own checks (the hosts they name are
        trusted destinations); never for showing."""
        return list(self._values.values())

    def names(self) -> list[str]:
        """The names of the secrets that are set (for choosing one in the editor)."""
        return sorted(self._values)

    def missing(self, names: set[str] | frozenset[str]) -> list[str]:
        return sorted(name for name in names if name not in self._values)

    def view(self, *, placeholders: bool) -> SecretsView:
        return SecretsView(self, placeholders)

    def lookup(self, *, placeholders: bool) -> Callable[[str], str]:
        """How templates read a secret: its value, or with `placeholders` (dry-run) its
        placeholder whether it is set or not, so no output built from it (`| reverse`,
        `[1:]`) can show any of its text."""

        def secret(name: str) -> str:
            if placeholders:
                return placeholder(name)
            return self.get(name)

        return secret

    def mask(self, value: Any) -> Any:
        """`value` with every secret's text replaced by its placeholder (nested data too)."""
        return self.replace_values(value, placeholder)

    def masked_traceback(self, exc: BaseException) -> str:
        """`exc` with its traceback, as a log shows it, secrets masked (an exception's text
        may quote a rendered value)."""
        masked: str = self.mask("".join(traceback.format_exception(exc)).rstrip())
        return masked

    def replace_values(self, value: Any, replacement: Callable[[str], str]) -> Any:
        """`value` with each secret's text replaced by `replacement(name)`, in one pass (so
        a replacement is never searched again), longest secret first (so a secret that
        contains another is replaced whole); nested lists and mappings too."""
        pattern = self._value_pattern()
        if pattern is None:
            return value
        return walk_strings(
            value, lambda text: pattern.sub(lambda m: replacement(self._names[m[0]]), text)
        )

    def _value_pattern(self) -> re.Pattern[str] | None:
        if self._pattern is None:
            pairs = [(n, v) for n, v in self._values.items() if len(v) >= MIN_MASKED_LENGTH]
            if not pairs:
                return None
            pairs.sort(key=lambda pair: -len(pair[1]))
            self._names = {value: name for name, value in reversed(pairs)}
            self._pattern = re.compile("|".join(re.escape(value) for _name, value in pairs))
        return self._pattern


def walk_strings(value: Any, change: Callable[[str], str]) -> Any:
    """`value` with `change` applied to every string inside it (lists, mappings)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [walk_strings(item, change) for item in value]
    if isinstance(value, dict):
        return {k: walk_strings(v, change) for k, v in value.items()}
    return value


class SecretsView(Mapping[str, str]):
    """`secrets` inside templates: `secrets.NAME` or `secrets['NAME']`."""

    def __init__(self, secrets: Secrets, placeholders: bool) -> None:
        self._secret = secrets.lookup(placeholders=placeholders)
        self._secrets = secrets

    def __getitem__(self, name: str) -> str:
        return self._secret(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())  # never enumerate secrets into a template

    def __len__(self) -> int:
        return 0

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._secrets.has(name)


class SecretRedactor(logging.Filter):
    """A logging filter for handlers: every record's text, traceback included, with the
    secrets masked. Defence in depth; omi-rules' own log calls mask what they quote."""

    def __init__(self, secrets: Callable[[], Secrets]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self.secrets()
        record.msg = secrets.mask(record.getMessage())
        record.args = ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = secrets.masked_traceback(record.exc_info[1])
            record.exc_info = None
        return True
