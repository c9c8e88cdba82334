"""The outbound guard: where connectors may send.

Link-local and cloud-metadata addresses are always refused (they are how a rule could steal
a cloud machine's credentials); loopback and private ranges, where home hubs live, are
allowed unless `allow` / `deny` lists narrow them. Host names are resolved and every
address checked, and the guard runs again on each redirect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from engine.errors import DeliveryError

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALWAYS_REFUSED: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local, AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})


def _networks(items: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


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
        """Why `address` may not be reached, or None when it may."""
        ip = ipaddress.ip_address(address)
        mapped = getattr(ip, "ipv4_mapped", None)
        if mapped is not None:
            ip = mapped
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
        parts = urlsplit(url)
        if parts.scheme not in self.schemes:
            raise DeliveryError(
                f"scheme {parts.scheme!r} not allowed", connector=connector, url=url
            )
        host = (parts.hostname or "").rstrip(".").lower()
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
                    host, parts.port or 443, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise DeliveryError(
                    f"cannot resolve {host}: {exc}", connector=connector, url=url, retryable=True
                ) from None
            addresses = sorted({str(info[4][0]).split("%")[0] for info in infos})
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise DeliveryError(
                    f"refused by outbound guard: {reason}", connector=connector, url=url
                )
