"""The registry: built-ins come from the entry-point group, third parties register alike."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest

from engine.connector import (
    ENTRY_POINT_GROUP,
    EVENT_BODY,
    Connector,
    ConnectorBase,
    Delivered,
    Registry,
    RenderEnv,
    SendEnv,
    default_registry,
)
from engine.dryrun import report
from engine.report_text import format_report
from engine.rules.loader import load_rules
from engine.runtime.pipeline import Pipeline
from engine.secrets import Secrets
from tests.connectors.helpers import render, send
from tests.helpers import event, memory, write_rule

BUILT_INS = {"slack", "email", "notion", "home_assistant", "http", "notify", "record", "log", "omi"}


def test_the_default_registry_holds_exactly_the_built_ins() -> None:
    registry = default_registry()
    assert set(registry) == BUILT_INS
    assert len(registry) == 9
    assert list(registry) == sorted(BUILT_INS)


def test_built_ins_register_through_the_entry_point_group() -> None:
    entries = {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}
    assert set(entries) == BUILT_INS
    for name, entry in entries.items():
        assert entry.value == f"connectors.{name}:connector"
        assert default_registry()[name] is entry.load()


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_each_built_in_satisfies_the_connector_protocol(name: str) -> None:
    connector = default_registry()[name]
    assert isinstance(connector, Connector)
    assert connector.name == name
    assert connector.summary and "\n" not in connector.summary
    assert issubclass(connector.Options, msgspec.Struct)
    assert issubclass(connector.Request, msgspec.Struct)
    assert isinstance(connector.autoescape_fields, frozenset)
    assert connector.inline is (name == "notify")
    reads_audio = name in ("record", "http")  # the chunk: http's body_audio, record
    assert connector.needs == (frozenset({EVENT_BODY}) if reads_audio else frozenset())


class ShoutOptions(msgspec.Struct, forbid_unknown_fields=True):
    text: str


class ShoutRequest(msgspec.Struct):
    text: str


class Shout(ConnectorBase):
    """A third-party connector: not in connectors/, not an entry point."""

    name = "shout"
    summary = "Shout the text back"
    Options = ShoutOptions
    Request = ShoutRequest
    autoescape_fields: ClassVar[frozenset[str]] = frozenset()

    def validate(self, options: ShoutOptions) -> list[tuple[str, str]]:
        return [] if options.text else [("text", "give some text")]

    def render(self, options: ShoutOptions, env: RenderEnv) -> ShoutRequest:
        return ShoutRequest(options.text.upper())

    async def send(self, request: ShoutRequest, env: SendEnv) -> Delivered:
        return Delivered(response=request.text + "!")


def test_a_third_party_connector_registers_and_runs() -> None:
    registry = Registry(dict(default_registry()))
    registry.register(Shout())
    assert set(registry) == BUILT_INS | {"shout"}
    shout = registry["shout"]
    assert isinstance(shout, Connector)
    assert shout.validate(ShoutOptions("")) == [("text", "give some text")]
    request = render(shout, {"text": "hello"})
    assert request == ShoutRequest("HELLO")
    assert send(shout, request).response == "HELLO!"
    assert "shout" not in default_registry()  # registering elsewhere leaves the default alone


def test_something_that_is_not_a_connector_is_refused() -> None:
    class Half:
        name = "half"

        async def send(self, request: object, env: SendEnv) -> Delivered:
            return Delivered()

    with pytest.raises(TypeError, match="does not implement the Connector protocol"):
        Registry().register(Half())  # type: ignore[arg-type]


class Announce(ConnectorBase[ShoutOptions, ShoutRequest]):
    """A third-party connector that describes its requests and answers Omi inline."""

    name = "announce"
    summary = "Announce the text to the user"
    Options = ShoutOptions
    Request = ShoutRequest
    inline = True

    def render(self, options: ShoutOptions, env: RenderEnv) -> ShoutRequest:
        return ShoutRequest(options.text)

    async def send(self, request: ShoutRequest, env: SendEnv) -> Delivered:
        return Delivered(response="answered inline")

    def describe(self, request: ShoutRequest) -> str:
        return f"ANNOUNCE {request.text!r}\nto the wearer"

    def inline_reply(self, request: ShoutRequest) -> str | None:
        return f"📣 {request.text}"


ANNOUNCE_RULES = """
    id: announce-title
    trigger: memory
    do:
      - announce: {text: "{{ memory.structured.title }}"}
      - announce: {text: "twice"}
"""


def test_a_third_party_connector_describes_its_request_in_dry_run(tmp_path: Path) -> None:
    registry = Registry({**default_registry(), "announce": Announce()})
    write_rule(tmp_path, ANNOUNCE_RULES)
    rules = load_rules(tmp_path, registry=registry)
    assert not rules.errors
    outcome = Pipeline(rules, Secrets({}), dry_run=True).process(event("memory", memory()))
    text = format_report(report(outcome, Secrets({})), "memory.json", registry)
    assert text.splitlines()[1:] == [
        "  ✔ announce-title: 2 action(s)",
        "    → announce: ANNOUNCE 'Launch planning'",
        "      to the wearer",
        "    → announce: ANNOUNCE 'twice'",
        "      to the wearer",
    ]


def test_a_third_party_connector_answers_omi_inline(tmp_path: Path) -> None:
    registry = Registry({**default_registry(), "announce": Announce()})
    write_rule(tmp_path, ANNOUNCE_RULES)
    rules = load_rules(tmp_path, registry=registry)
    outcome = Pipeline(rules, Secrets({}), dry_run=False).process(event("memory", memory()))
    # what the receiver puts in the webhook answer as {"message": ...}
    assert outcome.inline_reply() == "📣 Launch planning\n📣 twice"
    assert [a.inline for a in outcome.actions] == [True, True]


def test_a_connector_needing_an_unknown_capability_is_refused() -> None:
    class Greedy(Shout):
        name = "greedy"
        needs = frozenset({"root_shell"})

    with pytest.raises(TypeError, match=r"needs unknown capabilities: \['root_shell'\]"):
        Registry().register(Greedy())


def test_a_connector_without_the_optional_members_gets_the_defaults() -> None:
    from engine.connector import describe_of, inline_reply_of, needs_of

    class Bare:
        name = "bare"
        summary = "Only the required members"
        Options = ShoutOptions
        Request = ShoutRequest
        autoescape_fields: ClassVar[frozenset[str]] = frozenset()
        inline = False

        def validate(self, options: ShoutOptions) -> list[tuple[str, str]]:
            return []

        def required_secrets(self, options: ShoutOptions) -> set[str]:
            return set()

        def render(self, options: ShoutOptions, env: RenderEnv) -> ShoutRequest:
            return ShoutRequest(options.text)

        async def send(self, request: ShoutRequest, env: SendEnv) -> Delivered:
            return Delivered()

    bare = Bare()
    Registry().register(bare)
    assert describe_of(bare, ShoutRequest("hé")) == '{\n  "text": "hé"\n}'
    assert inline_reply_of(bare, ShoutRequest("hi")) is None
    assert needs_of(bare) == frozenset()


def test_a_connector_names_its_own_delivery_deadline() -> None:
    from connectors.http_kit import HttpRequest
    from connectors.notify import NotifyRequest
    from engine.connector import deadline_of

    registry = default_registry()
    assert deadline_of(registry["http"], HttpRequest("GET", "https://x.test", timeout=3.5)) == 3.5
    assert deadline_of(registry["notify"], NotifyRequest("hi")) is None  # the server's default
