"""The registry: built-ins come from the entry-point group, third parties register alike."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import ClassVar

import msgspec
import pytest

from engine.connector import (
    ENTRY_POINT_GROUP,
    Connector,
    ConnectorBase,
    Delivered,
    Registry,
    RenderEnv,
    SendEnv,
    default_registry,
)
from tests.connectors.helpers import render, send

BUILT_INS = {"slack", "email", "notion", "home_assistant", "http", "notify", "record", "log"}


def test_the_default_registry_holds_exactly_the_built_ins() -> None:
    registry = default_registry()
    assert set(registry) == BUILT_INS
    assert len(registry) == 8
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
