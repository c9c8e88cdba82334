"""The connector extension point: one Protocol and a registry filled from entry points.

A connector is one module in `connectors/` (or any installed package) exposing an object
that satisfies `Connector`, registered under the entry-point group `omi_rules.connectors`.
The built-in connectors register through that same group, so the engine never names a
service: it validates options with `Options`, renders with `render`, delivers with `send`,
shows a request with `describe`, answers Omi inline with `inline_reply`, and hands a
connector only the engine capabilities it declares in `needs`.

    options (YAML) --decode--> Options --templates--> Options --render--> Request --send-->

`connectors.http_kit` holds the helpers for connectors whose request is an HTTP call.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import httpx
import msgspec

from engine.outbound import OutboundGuard

ENTRY_POINT_GROUP = "omi_rules.connectors"

# Capabilities a connector may declare in `needs`; SendEnv carries only the declared ones.
EVENT_BODY = "event_body"  # env.event_body(event_id): the raw body of a stored event
CAPABILITIES = frozenset({EVENT_BODY})

OptionsT = TypeVar("OptionsT", bound=msgspec.Struct)
RequestT = TypeVar("RequestT", bound=msgspec.Struct)


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
    """What a connector may use while sending: a shared HTTP client, the secrets, and the
    capabilities it declared in `needs` (None when not declared)."""

    client: httpx.AsyncClient
    secret: Callable[[str], str]
    guard: Callable[[str], Awaitable[None]] = field(default=None)  # type: ignore[assignment]
    idempotency_key: str = ""
    event_body: Callable[[str], bytes] | None = None  # EVENT_BODY; blocking: call in a thread
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


@dataclass(frozen=True)
class Probe:
    """The answer to a connector's test request (the setup page shows it)."""

    ok: bool
    status: int | None = None
    answer: str = ""  # the service's answer, or why the test could not be made


@runtime_checkable
class Connector(Protocol[OptionsT, RequestT]):
    """One service omi-rules can act on, generic over its options and request types."""

    name: str
    summary: str  # one line for docs, schema and editor
    Options: type[OptionsT]  # what a `do:` item may say (validated at load)
    Request: type[RequestT]  # what `render` produces and the outbox stores
    autoescape_fields: ClassVar[frozenset[str]]  # options rendered with HTML autoescape
    inline: ClassVar[bool]  # True when the result rides in the webhook response

    def validate(self, options: OptionsT) -> list[tuple[str, str]]:
        """Problems with options that their types cannot express: (option name, message)."""
        ...

    def required_secrets(self, options: OptionsT) -> set[str]:
        """Secrets the connector needs beyond those its templates name."""
        ...

    def render(self, options: OptionsT, env: RenderEnv) -> RequestT:
        """Turn options whose templates are already rendered into the exact request."""
        ...

    async def send(self, request: RequestT, env: SendEnv) -> Delivered:
        """Deliver the request; raise DeliveryError on failure (retryable or not)."""
        ...

    # Optional: ConnectorBase has them, and the engine reads them through `describe_of`,
    # `inline_reply_of`, `needs_of`, `deadline_of` and `destination_of`, so a connector
    # written before them still works.
    #
    # needs: ClassVar[frozenset[str]]: the engine capabilities `send` uses (CAPABILITIES);
    #     SendEnv carries only these.
    # def describe(self, request) -> str: the request as a person reads it (dry-run
    #     reports, the editor): a first line saying what goes where, then any detail lines.
    #     It is given the request with secrets already masked.
    # def inline_reply(self, request) -> str | None: text for the webhook's answer to Omi
    #     (the replies of an event's actions are joined), or None.
    # def deadline(self, request) -> float | None: seconds one attempt to send `request`
    #     may take in all, or None for the server's `delivery_deadline`.
    # async def probe(self, options, env) -> Probe: one harmless request that shows whether
    #     the options (rendered with a user's settings) reach the service: the setup page's
    #     "test" button (engine.server.setup_probe). `env` is a SendEnv whose guard is the
    #     deliveries' one. A connector without it has no test button.
    # def destination(self, request) -> str | None: where `request` goes, as a URL
    #     (`https://host:port/...`, `smtp://host:port`), or None when it stays on this
    #     machine. The engine limits delivery, and refuses hosts taken from payload text,
    #     per host.


def plain_description(request: msgspec.Struct, destination: str | None) -> str:
    """Where the request goes (when it leaves this machine), then the request as JSON."""
    body = json.dumps(msgspec.to_builtins(request), indent=2, ensure_ascii=False)
    return f"{destination}\n{body}" if destination else body


class ConnectorBase(Generic[OptionsT, RequestT]):
    """Defaults shared by the built-in connectors; third parties may use it too."""

    autoescape_fields: ClassVar[frozenset[str]] = frozenset()
    inline: ClassVar[bool] = False
    needs: ClassVar[frozenset[str]] = frozenset()
    # URLs it sends to when the options name none (trusted like hosts a rule names)
    default_urls: ClassVar[tuple[str, ...]] = ()

    def validate(self, options: OptionsT) -> list[tuple[str, str]]:
        return []

    def required_secrets(self, options: OptionsT) -> set[str]:
        return set()

    def destination(self, request: RequestT) -> str | None:
        return None

    def deadline(self, request: RequestT) -> float | None:
        return None

    def describe(self, request: RequestT) -> str:
        return plain_description(request, self.destination(request))

    def inline_reply(self, request: RequestT) -> str | None:
        return None

    def advise(self, options: OptionsT, trigger: str) -> list[tuple[str, str]]:
        """Warnings about options that are valid but likely not what the author wants on
        `trigger`: (option name, message). `validate` shows them; the rule still loads."""
        return []

    def check_trigger(self, options: OptionsT, trigger: str) -> list[tuple[str, str]]:
        """Errors about options that cannot be used on `trigger` (option name, message):
        the rule does not load."""
        return []


def advice_of(
    connector: Connector[Any, Any], options: msgspec.Struct, trigger: str
) -> list[tuple[str, str]]:
    """`connector.advise(options, trigger)`, or nothing when the connector has no advice."""
    advise = getattr(connector, "advise", None)
    return list(advise(options, trigger)) if callable(advise) else []


def trigger_errors_of(
    connector: Connector[Any, Any], options: msgspec.Struct, trigger: str
) -> list[tuple[str, str]]:
    """`connector.check_trigger(options, trigger)`: options that must not load on `trigger`
    (option name, message), or nothing when the connector has no such check."""
    check = getattr(connector, "check_trigger", None)
    return list(check(options, trigger)) if callable(check) else []


def describe_of(connector: Connector[Any, Any], request: msgspec.Struct) -> str:
    """`connector.describe(request)`, or ConnectorBase's description when it has none."""
    describe = getattr(connector, "describe", None)
    if describe is None:
        return plain_description(request, destination_of(connector, request))
    return str(describe(request))


def inline_reply_of(connector: Connector[Any, Any], request: msgspec.Struct) -> str | None:
    """`connector.inline_reply(request)`, or None when the connector has no such method."""
    reply = getattr(connector, "inline_reply", None)
    return reply(request) if reply is not None else None


def deadline_of(connector: Connector[Any, Any], request: msgspec.Struct) -> float | None:
    """`connector.deadline(request)`, or None when the connector does not say."""
    deadline = getattr(connector, "deadline", None)
    return deadline(request) if deadline is not None else None


def probe_of(
    connector: Connector[Any, Any],
) -> Callable[[msgspec.Struct, SendEnv], Awaitable[Probe]] | None:
    """`connector.probe`, or None when the connector has no test request."""
    probe = getattr(connector, "probe", None)
    return probe if callable(probe) else None


def needs_of(connector: Connector[Any, Any]) -> frozenset[str]:
    """The capabilities `connector` declares (none when it says nothing)."""
    return frozenset(getattr(connector, "needs", frozenset()))


def order_key_of(connector: Connector[Any, Any], request: msgspec.Struct) -> str | None:
    """What `request` must be sent in order with (requests of one connector with the same
    key go one at a time, oldest first: appends to one file), or None: any order. A
    connector says so with an `order_key(request)` method."""
    order_key = getattr(connector, "order_key", None)
    return order_key(request) if order_key is not None else None


def ordered_connectors(registry: Mapping[str, Connector[Any, Any]]) -> list[str]:
    """The names of the connectors whose requests may need an order (`order_key`)."""
    return sorted(name for name, c in registry.items() if hasattr(c, "order_key"))


def destination_of(connector: Connector[Any, Any], request: msgspec.Struct) -> str | None:
    """Where `connector` sends `request` (a URL), or None: local, or the connector does not
    say (a third-party connector without `destination`)."""
    destination = getattr(connector, "destination", None)
    return destination(request) if destination is not None else None


class Registry(Mapping[str, Connector[Any, Any]]):
    """Connectors by name."""

    def __init__(self, connectors: dict[str, Connector[Any, Any]] | None = None) -> None:
        self._connectors: dict[str, Connector[Any, Any]] = dict(connectors or {})

    def register(self, connector: Connector[Any, Any]) -> None:
        if not isinstance(connector, Connector):
            raise TypeError(f"{connector!r} does not implement the Connector protocol")
        unknown = needs_of(connector) - CAPABILITIES
        if unknown:
            raise TypeError(
                f"connector {connector.name!r} needs unknown capabilities: {sorted(unknown)}"
            )
        self._connectors[connector.name] = connector

    def __getitem__(self, name: str) -> Connector[Any, Any]:
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
