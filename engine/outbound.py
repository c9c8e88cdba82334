"""The outbound guard: where connectors may send.

Link-local and cloud-metadata addresses are always refused (they are how a rule could steal
a cloud machine's credentials); loopback and private ranges, where home hubs live, are
allowed unless `allow` / `deny` lists narrow them. Host names are resolved and every
address checked; IPv4 addresses hidden in IPv6 ones (mapped, NAT64, 6to4) are checked as
IPv4. `make_client` builds the HTTP client whose every request, redirect hops included,
passes the guard first.

The guard checks the addresses a name resolves to when the request starts; the client
resolves the name again to connect, so a DNS server that answers differently the second
time (DNS rebinding) is not stopped here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.errors import DeliveryError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALWAYS_REFUSED: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("0.0.0.0/8"),  # "this network": 0.0.0.0 reaches the machine itself
    ipaddress.ip_network("::/128"),
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


@dataclass
class OutboundGuard:
    """Refuses URLs whose host resolves to a forbidden address."""

    allow: Sequence[str] = ()  # when set, only these networks may be reached
    deny: Sequence[str] = ()
    schemes: frozenset[str] = frozenset({"http", "https"})
    _allow: tuple[IpNetwork, ...] = field(init=False)
    _deny: tuple[IpNetwork, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._allow = _networks(self.allow)
        self._deny = _networks(self.deny)

    def refusal(self, address: str) -> str | None:
        """Why the IP `address` may not be reached, or None when it may (ValueError: no IP)."""
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address)
        ip = _as_ipv4(ip) or ip
        for network in ALWAYS_REFUSED:
            if ip in network:
                return f"{ip} is link-local or cloud metadata"
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
        if host in METADATA_HOSTS:
            raise DeliveryError(
                f"refused: {host} is a cloud metadata host", connector=connector, url=url
            )
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port or 443, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise DeliveryError(
                    f"cannot resolve {host}: {exc}", connector=connector, url=url, retryable=True
                ) from None
            except UnicodeError as exc:  # not a valid host name (label too long...)
                raise DeliveryError(
                    f"host name {host!r} is not valid: {exc}", connector=connector, url=url
                ) from None
            addresses = sorted({str(info[4][0]).split("%")[0] for info in infos})
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise DeliveryError(
                    f"refused by outbound guard: {reason}", connector=connector, url=url
                )


def make_client(guard: OutboundGuard, **kwargs: Any) -> httpx.AsyncClient:
    """An AsyncClient that follows redirects and runs `guard` on every request it sends.

    A redirect to a refused address raises DeliveryError before any connection is made.
    """

    async def check_request(request: httpx.Request) -> None:
        await guard.check(str(request.url))

    hooks = dict(kwargs.pop("event_hooks", None) or {})
    hooks["request"] = [check_request, *hooks.get("request", [])]
    kwargs.setdefault("follow_redirects", True)
    return httpx.AsyncClient(event_hooks=hooks, **kwargs)
