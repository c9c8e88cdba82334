"""The README documents every connector, connector option, CLI command and setting."""

from __future__ import annotations

import itertools
import re

import msgspec
import pytest

from engine.cli import main
from engine.config import Settings
from engine.connector import default_registry
from engine.rules.rule_model import KEYWORD_OPTIONS, PATH_OPERATORS, Rule
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def table_lines(header: str) -> list[str]:
    """The rows of the README table under `header` (its first line, exactly)."""
    lines = README.split(f"\n{header}\n", 1)[1].splitlines()[1:]  # past the |---| line
    return list(itertools.takewhile(lambda line: line.startswith("|"), lines))


def table_rows(header: str) -> dict[str, str]:
    """The README table under `header`: the first cell's backticked name -> the rest."""
    rows: dict[str, str] = {}
    for line in table_lines(header):
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
    assert "--json" in usage_lines("history") and "--json" not in usage_lines("prune")


def usage_lines(command: str) -> str:
    """The lines of the README's Command line block that show `omi-rules <command>`."""
    block = README.split("## Command line\n", 1)[1].split("```", 2)[1]
    prefix = re.compile(rf"omi-rules {re.escape(command)}\s")
    return "\n".join(line for line in block.splitlines() if prefix.match(line))


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_is_documented(command: str) -> None:
    """Each command has a usage line, and each of its flags is on one of its own lines."""
    usage = usage_lines(command)
    assert usage, f"omi-rules {command} has no line in the Command line block"
    for param in main.commands[command].params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--") and flag != "--help":
                assert re.search(rf"{re.escape(flag)}\b", usage), f"{command} {flag} undocumented"


def test_every_rule_key_and_operator_is_documented() -> None:
    keys = table_rows("| key | meaning |")
    assert sorted(keys) == sorted(field.encode_name for field in msgspec.structs.fields(Rule))
    # each operator appears in the example as a YAML key or in an `# also:` comment, and
    # the example names no operator that does not exist
    assert documented_path_operators() == set(PATH_OPERATORS)


def test_every_keywords_option_is_in_the_keywords_example() -> None:
    """`speaker`, `fuzzy`, `negation`: each a key of the YAML example under **keywords**."""
    section = README.split("### Conditions", 1)[1].split("\n**keywords**", 1)[1]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "no YAML example under **keywords**"
    keys = set(re.findall(r"^\s+(?:- )?(\w+):", match.group(1), re.M))
    assert keys == {"keywords", *KEYWORD_OPTIONS}


def test_every_setting_is_documented() -> None:
    """Each setting is named in the settings table (not merely somewhere in the README)."""
    table = "\n".join(table_lines("| setting | default | |"))
    for field in msgspec.structs.fields(Settings):
        assert f"`{field.name}`" in table, f"setting {field.name} not in the settings table"


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
