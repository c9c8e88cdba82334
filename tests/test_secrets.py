"""Secrets from the environment or a file, reachable by templates, masked everywhere shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError
from engine.errors import SecretError
from engine.secrets import Secrets, placeholder, placeholder_name


def test_load_from_environment_and_file(tmp_path: Path) -> None:
    yaml_file = tmp_path / "secrets.yaml"
    yaml_file.write_text("SLACK: from-file\nPORT: 587\nEMPTY:\nHA: file-ha\n")
    environ = {"OMI_RULES_SECRET_HA": "env-ha", "OMI_RULES_SECRET_": "no name", "PATH": "/bin"}
    secrets = Secrets.load(yaml_file, environ=environ)
    assert secrets.get("SLACK") == "from-file"
    assert secrets.get("PORT") == "587"
    assert secrets.get("HA") == "env-ha"  # the environment wins over the file
    assert not secrets.has("EMPTY")
    assert not secrets.has("PATH")
    assert not secrets.has("")


def test_secrets_file_from_the_environment_and_dotenv_format(tmp_path: Path) -> None:
    dotenv = tmp_path / "omi.env"
    dotenv.write_text("# comment\nexport TOKEN='abc123'\nURL = \"https://x.test\"\n")
    secrets = Secrets.load(environ={"OMI_RULES_SECRETS": str(dotenv)})
    assert (secrets.get("TOKEN"), secrets.get("URL")) == ("abc123", "https://x.test")


@pytest.mark.parametrize("name", ["omi.env", "secrets.txt"])
def test_dotenv_comments_quotes_and_dollars(tmp_path: Path, name: str) -> None:
    file = tmp_path / name
    file.write_text(
        "TOKEN=abc # prod\n"
        'QUOTED="two words # kept"\n'
        "SINGLE='a \"b\"'\n"
        'ESCAPED="line\\nbreak"\n'
        "DOLLAR=pa$$word${HOME}\n"
        "BARE_NAME\n"
        "EMPTY=\n"
    )
    secrets = Secrets.load(file, environ={})
    assert secrets.get("TOKEN") == "abc"  # a trailing comment is not part of the value
    assert secrets.get("QUOTED") == "two words # kept"
    assert secrets.get("SINGLE") == 'a "b"'
    assert secrets.get("ESCAPED") == "line\nbreak"
    assert secrets.get("DOLLAR") == "pa$$word${HOME}"  # never interpolated
    assert not secrets.has("BARE_NAME") and not secrets.has("EMPTY")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('OK=1\nTOKEN="abc\nAFTER=2\n', 2),  # an unclosed quote
        ("OK=1\nnot a pair\n", 2),
        ("TOKEN='abc\n", 1),
    ],
)
def test_a_line_dotenv_cannot_read_is_an_error_naming_file_and_line(
    tmp_path: Path, text: str, line: int
) -> None:
    file = tmp_path / "omi.env"
    file.write_text(text)
    with pytest.raises(ConfigError) as raised:
        Secrets.load(file, environ={})
    assert str(raised.value) == (
        f"secrets file {file}, line {line}: not NAME=value (an unclosed quote?)"
    )
    assert "abc" not in str(raised.value)  # the line is not quoted back


def test_os_environ_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMI_RULES_SECRET_SLACK_WEBHOOK_URL", "https://hooks.test/T/B/xyz")
    assert Secrets.load().get("SLACK_WEBHOOK_URL") == "https://hooks.test/T/B/xyz"


def test_missing_secret_is_a_secret_error() -> None:
    with pytest.raises(SecretError) as caught:
        Secrets({}).get("NOPE")
    assert str(caught.value) == (
        "secret NOPE is not set (set OMI_RULES_SECRET_NOPE or add it to the secrets file)"
    )
    assert Secrets({"A": "1"}).missing({"A", "B", "C"}) == ["B", "C"]


def test_mask_replaces_values_in_nested_data() -> None:
    secrets = Secrets({"TOKEN": "s3cr3t-token", "LONG": "s3cr3t-token-and-more", "PIN": "12"})
    data = {
        "url": "https://x.test/?t=s3cr3t-token",
        "headers": {"Authorization": "Bearer s3cr3t-token-and-more"},
        "list": ["s3cr3t-token", 5, None],
        "pin": "code 12",
    }
    assert secrets.mask(data) == {
        "url": "https://x.test/?t=<secret:TOKEN>",
        "headers": {"Authorization": "Bearer <secret:LONG>"},
        "list": ["<secret:TOKEN>", 5, None],
        "pin": "code 12",  # too short to mask without garbling other text
    }


def test_lookup_and_view_in_dry_run_and_serving() -> None:
    secrets = Secrets({"A": "value-a"})
    assert secrets.lookup(placeholders=True)("B") == "<secret:B>"
    assert secrets.lookup(placeholders=True)("A") == "<secret:A>"  # set: still not shown
    assert secrets.lookup(placeholders=False)("A") == "value-a"
    with pytest.raises(SecretError):
        secrets.lookup(placeholders=False)("B")
    view = secrets.view(placeholders=False)
    assert view["A"] == "value-a"
    assert "A" in view and "B" not in view
    assert (list(view), len(view)) == ([], 0)  # never enumerated into a template


def test_placeholders() -> None:
    assert placeholder("X") == "<secret:X>"
    assert placeholder_name(" <secret:X> ") == "X"
    assert placeholder_name("<secret:X> and more") is None
