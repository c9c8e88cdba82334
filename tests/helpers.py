"""Builders shared by the engine tests: rule files in a temporary folder, decoded events,
and a dry-run pipeline with an explicit clock. Real parts only: these call the engine."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

from engine.errors import RuleError
from engine.rules.compiled import RuleSet
from engine.rules.loader import load_rules
from engine.runtime.matcher import Decision
from engine.runtime.payloads import Event, decode_event
from engine.runtime.pipeline import Outcome, Pipeline
from engine.secrets import Secrets

NOW = 1_721_692_800.0  # 2024-07-23 00:00:00 UTC, a Tuesday


def write_rule(folder: Path, text: str, name: str = "rule.yaml") -> Path:
    """Write a rule file; `text` is dedented so tests can indent it with their code."""
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_ok(folder: Path, text: str, name: str = "rule.yaml") -> RuleSet:
    """Load one rule file that must be valid."""
    write_rule(folder, text, name)
    ruleset = load_rules(folder)
    if ruleset.errors:
        raise AssertionError("\n".join(str(error) for error in ruleset.errors))
    return ruleset


def load_errors(folder: Path, text: str, name: str = "rule.yaml") -> list[RuleError]:
    """Load one rule file that must be broken; its errors."""
    write_rule(folder, text, name)
    ruleset = load_rules(folder)
    if not ruleset.errors:
        raise AssertionError(f"expected errors, loaded {[r.id for r in ruleset.rules]}")
    return ruleset.errors


def shown(path: Path) -> str:
    """A file name as rule errors show it."""
    return os.path.relpath(path)


def event(trigger: str, doc: Any, *, uid: str = "user123", session: str = "") -> Event:
    return decode_event(trigger, json.dumps(doc).encode(), uid=uid, session_id=session)


def memory(**structured: Any) -> dict[str, Any]:
    """A small memory payload; `structured` fields override the defaults."""
    return {
        "id": "m1",
        "started_at": "2024-07-21T22:34:43+00:00",
        "finished_at": "2024-07-21T22:35:43+00:00",
        "transcript_segments": [
            {"text": "Let's plan the launch.", "speaker": "SPEAKER_00", "is_user": True},
            {"text": "Sure, next sprint.", "speaker": "SPEAKER_01", "is_user": False},
        ],
        "structured": {
            "title": "Launch planning",
            "overview": "We planned the launch.",
            "emoji": "🚀",
            "category": "work",
            "action_items": [
                {"description": "Write the plan", "completed": False},
                {"description": "Book a room", "completed": True},
            ],
            **structured,
        },
        "discarded": False,
    }


def pipeline(ruleset: RuleSet, secrets: Secrets | None = None, *, dry_run: bool = True) -> Pipeline:
    return Pipeline(ruleset, secrets or Secrets({}), dry_run=dry_run)


def run(ruleset: RuleSet, evt: Event, *, now: float = NOW) -> Outcome:
    """One event through a fresh dry-run pipeline."""
    return pipeline(ruleset).process(evt, now=now)


def decision(outcome: Outcome, rule_id: str) -> Decision:
    (found,) = [d for d in outcome.decisions if d.rule.id == rule_id]
    return found
