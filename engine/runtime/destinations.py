"""Where an action goes, as the engine sees it: a host, and a delivery target key.

A connector says where a request goes (`Connector.destination`: a URL, or None for a local
action); the engine never reads connector-specific fields. The target key groups actions
that share a destination, so limits and the circuit breaker apply per destination:
`http:hooks.example.com:443`, `email:smtp.example.com:587`, or the connector name alone
(`log`, `record`) for local actions.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from engine.rules.trust import normal_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def host_of(url: str | None) -> str | None:
    """The host of `url` (engine.rules.trust.normal_host), or None when it has none, cannot be
    parsed, or is no host name (dry-run's `<secret:NAME>` stand-in)."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return normal_host(host) if host else None


def target_key(connector: str, destination: str | None) -> str:
    """The key actions to the same place share: connector, host and port."""
    host = host_of(destination)
    if destination is None or host is None:
        return connector
    parts = urlsplit(destination)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    return f"{connector}:{host}:{port}" if port else f"{connector}:{host}"
