"""The outbound guard: where connectors may send.

Link-local and cloud-metadata addresses are always refused (they are how a rule could steal
a cloud machine's credentials), and so are multicast, broadcast and reserved ones. Loopback
and private ranges, where home hubs live, are allowed for trusted hosts (the ones the
owner named: engine.rules.trust) unless `allow` / `deny` lists narrow them; any other host may
reach public addresses only. Host names are resolved and every address checked; IPv4
addresses hidden in IPv6 ones (mapped, NAT64, 6to4) are checked as IPv4.

`make_client` builds the HTTP client whose every request, redirect hops included, passes
the guard first, and whose connections go to the very address the guard checked
(`PinnedBackend`: resolved once, checked, connected to), so a DNS answer that changes
between the check and the connection (DNS rebinding) cannot get past it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from engine.errors import DeliveryError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = "link-local or cloud metadata"
ALWAYS_REFUSED: tuple[tuple[IpNetwork, str], ...] = tuple(
    (ipaddress.ip_network(network), why)
    for network, why in (
        ("169.254.0.0/16", _METADATA),  # link-local, AWS/GCP/Azure metadata
        ("fe80::/10", _METADATA),
        ("100.100.100.200/32", _METADATA),  # Alibaba Cloud metadata
        ("fd00:ec2::254/128", _METADATA),  # AWS metadata over IPv6
        ("0.0.0.0/8", _METADATA),  # "this network": 0.0.0.0 reaches the machine itself
        ("::/128", _METADATA),
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
        ("240.0.0.0/4", "reserved or broadcast"),  # 255.255.255.255 included
    )
)
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data"}
)
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def _networks(items: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _as_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, NAT64 or 6to4), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver), IPv6 scope ids dropped."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


@dataclass
class OutboundGuard:
    """Refuses URLs whose host resolves to a forbidden address."""

    allow: Sequence[str] = ()  # when set, only these networks may be reached
    deny: Sequence[str] = ()
    schemes: frozenset[str] = frozenset({"http", "https"})
    # hosts that may reach loopback and private addresses; None: every host (no rules)
    trusted: Callable[[str], bool] | None = None
    resolver: Resolver = resolve
    _allow: tuple[IpNetwork, ...] = field(init=False)
    _deny: tuple[IpNetwork, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._allow = _networks(self.allow)
        self._deny = _networks(self.deny)

    def refusal(self, address: str) -> str | None:
        """Why the IP `address` may not be reached, or None when it may (ValueError: no IP)."""
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
        ip = _as_ipv4(ip) or ip
        for network, why in ALWAYS_REFUSED:
            if ip in network:
                return f"{ip} is {why}"
        for network in self._deny:
            if ip in network:
                return f"{ip} is in denied network {network}"
        if self._allow and not any(ip in network for network in self._allow):
            return f"{ip} is outside the allowed networks"
        return None

    async def check(self, url: str, connector: str = "http") -> None:
        """Raise DeliveryError unless every address `url`'s host resolves to may be reached."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".").lower()
            port = parts.port
        except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535"
            raise DeliveryError(str(exc), connector=connector, url=url) from None
        if parts.scheme not in self.schemes:
            raise DeliveryError(
                f"scheme {parts.scheme!r} not allowed", connector=connector, url=url
            )
        if not host:
            raise DeliveryError("URL has no host", connector=connector, url=url)
        default_port = 443 if parts.scheme == "https" else 80
        await self.addresses(host, port or default_port, connector, url)

    async def addresses(
        self, host: str, port: int, connector: str = "http", url: str = ""
    ) -> list[str]:
        """Every address `host` resolves to, each checked; DeliveryError if any is refused."""
        host = host.rstrip(".").lower()
        if host in METADATA_HOSTS:
            raise DeliveryError(
                f"refused: {host} is a cloud metadata host", connector=connector, url=url
            )
        try:
            addresses = [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            try:
                addresses = await self.resolver(host, port)
            except OSError as exc:
                raise DeliveryError(
                    f"cannot resolve {host}: {exc}", connector=connector, url=url, retryable=True
                ) from None
            except UnicodeError as exc:  # not a valid host name (label too long...)
                raise DeliveryError(
                    f"host name {host!r} is not valid: {exc}", connector=connector, url=url
                ) from None
        if not addresses:
            raise DeliveryError(
                f"cannot resolve {host}: no address", connector=connector, url=url, retryable=True
            )
        for address in addresses:
            reason = self.refusal(address) or self._untrusted(host, address)
            if reason:
                raise DeliveryError(
                    f"refused by outbound guard: {reason}", connector=connector, url=url
                )
        return addresses

    def _untrusted(self, host: str, address: str) -> str | None:
        """Why an untrusted `host` may not reach `address` (not a public one), or None."""
        if self.trusted is None or self.trusted(host):
            return None
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
        ip = _as_ipv4(ip) or ip
        if ip.is_global:
            return None
        return (
            f"{host} resolves to {ip}, a loopback or private address, and is not a trusted "
            "host (named in a rule, a secret or outbound_allow_hosts)"
        )


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the address the guard checked, never to a second DNS answer.

    httpcore asks it for a connection to (host, port); it resolves the host once, has the
    guard check every address, and connects to those addresses only. TLS still verifies
    the URL's host name: httpcore passes it as server_hostname, not the address."""

    def __init__(
        self, guard: OutboundGuard, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.guard = guard
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.guard.addresses(host, port)
        for index, address in enumerate(addresses):
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if index == len(addresses) - 1:
                    raise
        raise httpcore.ConnectError(f"no address for {host}")  # addresses is never empty

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not outbound destinations")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool on a PinnedBackend.

    Relies on `AsyncHTTPTransport._pool` (httpx 0.28, httpcore 1.0: pinned in pyproject)."""

    def __init__(self, guard: OutboundGuard) -> None:
        super().__init__()
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(guard),
        )


def make_client(guard: OutboundGuard, **kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient that follows redirects, runs `guard` on every request it sends, and
    connects only to addresses the guard checked.

    A redirect to a refused address raises DeliveryError before any connection is made.
    Proxies from the environment are not used: a proxy would connect for us, unchecked.
    """

    async def check_request(request: httpx.Request) -> None:
        await guard.check(str(request.url))

    hooks = dict(kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [check_request, *hooks.get("request", [])]
    kwargs.setdefault("follow_redirects", True)
    kwargs.setdefault("transport", PinnedTransport(guard))
    kwargs.setdefault("trust_env", False)
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)
