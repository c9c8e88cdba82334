"""The README documents every connector, connector option, CLI command and setting."""

from __future__ import annotations

import re

import msgspec
import pytest

from engine.cli import main
from engine.config import Settings
from engine.connector import default_registry
from engine.rules.rule_model import PATH_OPERATORS, Rule
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(default_registry()))
def test_every_connector_and_option_is_documented(name: str) -> None:
    connector = default_registry()[name]
    assert f"`{name}`" in README
    for field in msgspec.structs.fields(connector.Options):
        assert f"`{field.encode_name}`" in README, f"{name}.{field.encode_name} undocumented"


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_is_documented(command: str) -> None:
    assert f"omi-rules {command}" in README
    for param in main.commands[command].params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--") and flag != "--help":
                assert flag in README, f"{command} {flag} undocumented"


def test_every_rule_key_and_operator_is_documented() -> None:
    for field in msgspec.structs.fields(Rule):
        assert f"`{field.encode_name}`" in README
    for operator in PATH_OPERATORS:
        assert operator in README


def test_every_setting_is_documented() -> None:
    for field in msgspec.structs.fields(Settings):
        assert f"`{field.name}`" in README, f"setting {field.name} undocumented"


def test_readme_gives_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def test_every_test_security_md_names_exists() -> None:
    """SECURITY.md points at the test proving each defence: each named test must exist."""
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", text))
    defined = {
        name
        for path in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(), re.M)
    }
    files = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    assert len(named) > 30
    assert sorted(named - defined - files) == []
