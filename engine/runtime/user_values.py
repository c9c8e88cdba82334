"""One Omi user's per-user settings as rules see them: `user.settings.NAME` in templates.

Kept by engine.server.user_settings; a dry-run without a user shows each setting as
`<secret:user.NAME>`. A user's secret settings are secrets named `user.NAME` (`secrets`):
masked and sealed like the server's own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.secrets import Secrets, placeholder

USER_SECRET_PREFIX = "user."


def secret_name(setting: str) -> str:
    """The name a user's secret setting goes by among secrets (seals, masks)."""
    return USER_SECRET_PREFIX + setting


@dataclass(frozen=True)
class UserValues:
    """One user's settings, as the engine uses them (never for showing: secrets are plain)."""

    uid: str
    values: Mapping[str, str] = field(default_factory=dict)
    secret_names: frozenset[str] = frozenset()
    secrets: Secrets = field(default_factory=Secrets)  # the server's + `user.NAME` ones
    base: Secrets | None = field(default=None, repr=False)  # the server's, when loaded

    def missing(self, names: frozenset[str]) -> list[str]:
        return sorted(name for name in names if name not in self.values)

    def template_view(self) -> dict[str, Any]:
        """`user` in templates: `user.uid`, `user.settings.NAME` (reads are counted)."""
        return {"uid": self.uid, "settings": SettingsReads(self.values)}


class SettingsReads(Mapping[str, str]):
    """`user.settings` while serving: every read counts, however the template reaches
    it (`user.settings.url`, a `{% set %}` alias, `| dictsort`, a loop), so an action
    whose rendering read any setting is known to be user-chosen (engine.runtime.planner)
    without reading its template's text."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        # underscored: a template's `user.settings.NAME` never reaches it (the sandbox)
        self._reads = 0

    def __getitem__(self, name: str) -> str:
        self._reads += 1
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        self._reads += 1
        return iter(self._values)

    def __len__(self) -> int:
        self._reads += 1
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        self._reads += 1
        return name in self._values


def reads_of(settings: SettingsReads) -> int:
    """How many times templates have read `settings` so far."""
    return settings._reads


class PlaceholderSettings(Mapping[str, str]):
    """`user.settings` in a dry-run without a user: each name as `<secret:user.NAME>`."""

    def __getitem__(self, name: str) -> str:
        return placeholder(secret_name(name))

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def placeholder_user(uid: str) -> dict[str, Any]:
    return {"uid": uid, "settings": PlaceholderSettings()}
