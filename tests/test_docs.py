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


def table_rows(header: str) -> dict[str, str]:
    """The README table under `header` (its first line, exactly): the first cell's
    backticked name -> the rest of that row."""
    lines = README.split(f"\n{header}\n", 1)[1].splitlines()[1:]  # past the |---| line
    rows: dict[str, str] = {}
    for line in lines:
        if not line.startswith("|"):
            break
        first, rest = line.strip("|").split("|", 1)
        rows[first.strip().strip("`")] = rest
    return rows


def conditions_example() -> str:
    """The YAML example of the Conditions section."""
    section = README.split("### Conditions", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "no YAML example under ### Conditions"
    return match.group(1)


def documented_path_operators() -> set[str]:
    """Operators the Conditions example uses as keys or names in an `# also:` comment."""
    example = conditions_example()
    keys = set(re.findall(r"^\s+(?:- )?(\w+):", example, re.M))
    also = {
        word
        for text in re.findall(r"# also: ([^(\n]*)", example)
        for word in re.findall(r"\w+", text)
    }
    return (keys | also) - {"path"}


@pytest.mark.parametrize("name", list(default_registry()))
def test_every_connector_and_option_is_documented(name: str) -> None:
    """Each connector has its own row in the connector table, naming each of its options."""
    connector = default_registry()[name]
    rows = table_rows("| connector | options |")
    assert name in rows, f"connector {name} has no row in the README's connector table"
    for field in msgspec.structs.fields(connector.Options):
        option = f"`{field.encode_name}`"
        assert option in rows[name], f"{name}.{field.encode_name} undocumented in its row"


def test_the_table_readers_find_what_is_there_and_nothing_else() -> None:
    # the helpers above must be able to say no
    rows = table_rows("| connector | options |")
    assert "`url`" in rows["http"] and "`url`" not in rows["log"]
    assert "in" in documented_path_operators() and "at" not in documented_path_operators()


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_is_documented(command: str) -> None:
    assert f"omi-rules {command}" in README
    for param in main.commands[command].params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--") and flag != "--help":
                assert flag in README, f"{command} {flag} undocumented"


def test_every_rule_key_and_operator_is_documented() -> None:
    keys = table_rows("| key | meaning |")
    assert sorted(keys) == sorted(field.encode_name for field in msgspec.structs.fields(Rule))
    # each operator appears in the example as a YAML key or in an `# also:` comment, and
    # the example names no operator that does not exist
    assert documented_path_operators() == set(PATH_OPERATORS)


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
