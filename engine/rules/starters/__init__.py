"""The templates a new rule starts from: `<name>.yaml` beside this file, each a valid rule."""

from __future__ import annotations

import functools
from pathlib import Path

import msgspec

HERE = Path(__file__).parent

STARTERS = (
    ("blank", "Blank rule"),
    ("work-to-slack", "Work memories to Slack"),
    ("action-items-to-notion", "Action items to Notion"),
    ("voice-to-home-assistant", "Voice command to Home Assistant"),
    ("daily-summary-email", "Daily summary by email"),
)


class Starter(msgspec.Struct):
    name: str  # the file's stem, e.g. "work-to-slack"
    title: str  # what the "new rule" menu shows
    text: str  # the rule's YAML, comments saying which secrets it needs


def starters() -> list[Starter]:
    """Every starter, blank first."""
    return list(_read_starters())


@functools.cache
def _read_starters() -> tuple[Starter, ...]:
    """The starter files, read once (the rules list asks for them on every view)."""
    return tuple(
        Starter(name, title, (HERE / f"{name}.yaml").read_text(encoding="utf-8"))
        for name, title in STARTERS
    )
