"""The connector extension point: one Protocol and a registry filled from entry points.

A connector is one module in `connectors/` (or any installed package) exposing an object
that satisfies `Connector`, registered under the entry-point group `omi_rules.connectors`.
The built-in connectors register through that same group, so the engine never names a
service: it validates options with `Options`, renders with `render`, delivers with `send`.

    options (YAML) --decode--> Options --templates--> Options --render--> Request --send-->
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import msgspec

from engine.outbound import OutboundGuard

ENTRY_POINT_GROUP = "omi_rules.connectors"


@dataclass(frozen=True)
class RenderEnv:
    """What a connector may consult while turning rendered options into a request."""

    secret: Callable[[str], str]  # looks up a configured secret (placeholder in dry-run)
    has_secret: Callable[[str], bool]
    data_dir: str = "data"
    event_id: str = ""
    uid: str = ""
    session_id: str = ""
    rule_id: str = ""
    received_at: float = 0.0
    event: Mapping[str, Any] | None = None  # the payload document, as rules see it


@dataclass
class SendEnv:
    """What a connector may use while sending: a shared HTTP client and the secrets."""

    client: httpx.AsyncClient
    secret: Callable[[str], str]
    guard: Callable[[str], Awaitable[None]] = field(default=None)  # type: ignore[assignment]
    idempotency_key: str = ""
    read_audio: Callable[[str], bytes] | None = None
    data_dir: str = "data"  # the only folder connectors may write in (engine.paths)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.guard is None:
            self.guard = OutboundGuard().check  # raises DeliveryError for refused URLs


@dataclass(frozen=True)
class Delivered:
    """The service's answer to a successful send, kept in history."""

    status: int | None = None
    response: str = ""


@runtime_checkable
class Connector(Protocol):
    """One service omi-rules can act on."""

    name: str
    summary: str  # one line for docs, schema and editor
    Options: type[msgspec.Struct]  # what a `do:` item may say (validated at load)
    Request: type[msgspec.Struct]  # what `render` produces and the outbox stores
    autoescape_fields: ClassVar[frozenset[str]]  # options rendered with HTML autoescape
    inline: ClassVar[bool]  # True when the result rides in the webhook response (notify)

    def validate(self, options: msgspec.Struct) -> list[tuple[str, str]]:
        """Problems with options that their types cannot express: (option name, message)."""
        ...

    def required_secrets(self, options: msgspec.Struct) -> set[str]:
        """Secrets the connector needs beyond those its templates name."""
        ...

    def render(self, options: msgspec.Struct, env: RenderEnv) -> msgspec.Struct:
        """Turn options whose templates are already rendered into the exact request."""
        ...

    async def send(self, request: msgspec.Struct, env: SendEnv) -> Delivered:
        """Deliver the request; raise DeliveryError on failure (retryable or not)."""
        ...

    # Optional (ConnectorBase has it; read through `destination_of`):
    # def destination(self, request) -> str | None: where `request` goes, as a URL
    # (`https://host:port/...`, `smtp://host:port`), or None when it stays on this machine.
    # The engine limits delivery, and refuses hosts taken from payload text, per host.


class ConnectorBase:
    """Defaults shared by the built-in connectors; third parties may use it too."""

    autoescape_fields: ClassVar[frozenset[str]] = frozenset()
    inline: ClassVar[bool] = False
    # URLs it sends to when the options name none (trusted like hosts a rule names)
    default_urls: ClassVar[tuple[str, ...]] = ()

    def validate(self, options: msgspec.Struct) -> list[tuple[str, str]]:
        return []

    def required_secrets(self, options: msgspec.Struct) -> set[str]:
        return set()

    def destination(self, request: msgspec.Struct) -> str | None:
        return None

    def advise(self, options: msgspec.Struct, trigger: str) -> list[tuple[str, str]]:
        """Warnings about options that are valid but likely not what the author wants on
        `trigger`: (option name, message). `validate` shows them; the rule still loads."""
        return []


def advice_of(connector: Connector, options: msgspec.Struct, trigger: str) -> list[tuple[str, str]]:
    """`connector.advise(options, trigger)`, or nothing when the connector has no advice."""
    advise = getattr(connector, "advise", None)
    return list(advise(options, trigger)) if callable(advise) else []


def destination_of(connector: Connector, request: msgspec.Struct) -> str | None:
    """Where `connector` sends `request` (a URL), or None: local, or the connector does not
    say (a third-party connector without `destination`)."""
    destination = getattr(connector, "destination", None)
    return destination(request) if destination is not None else None


class Registry(Mapping[str, Connector]):
    """Connectors by name."""

    def __init__(self, connectors: dict[str, Connector] | None = None) -> None:
        self._connectors: dict[str, Connector] = dict(connectors or {})

    def register(self, connector: Connector) -> None:
        if not isinstance(connector, Connector):
            raise TypeError(f"{connector!r} does not implement the Connector protocol")
        self._connectors[connector.name] = connector

    def __getitem__(self, name: str) -> Connector:
        return self._connectors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._connectors))

    def __len__(self) -> int:
        return len(self._connectors)


_default: Registry | None = None


def default_registry() -> Registry:
    """Every connector installed under the `omi_rules.connectors` entry-point group."""
    global _default
    if _default is None:
        registry = Registry()
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            registry.register(entry.load())
        _default = registry
    return _default
