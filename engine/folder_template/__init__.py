"""What `omi-rules init` writes into a new working folder: the example rules (`rules`, a
link to the repository's `rules/` that the wheel carries as a copy) and the commented
configuration `omi-rules.yaml`. The samples come from `engine.samples`."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
RULES_DIR = TEMPLATE_DIR / "rules"
CONFIG_FILE = TEMPLATE_DIR / "omi-rules.yaml"
