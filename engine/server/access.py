"""Who may reach what: the Host check for every request, the admin token for everything
that is not one of Omi's webhooks, the setup pages or the health check.

Omi's webhooks carry their own signature or token (engine.server.receiver); `/setup*` is opened by
Omi for any user and `/health` says nothing private. Everything else (`/api/*`, `/schema`,
`/metrics`, and later `/ui`) shows transcripts, rules and requests, so it needs the admin
token: `Authorization: Bearer <token>` or `X-Omi-Rules-Admin-Token: <token>`.

The Host check stops DNS rebinding: a web page whose name resolves to 127.0.0.1 would
otherwise talk to a server on loopback as if it were its own origin.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from engine.config import Settings
from engine.keyfiles import read_or_create

log = logging.getLogger("omi_rules.access")

TOKEN_FILE = "admin-token"
ADMIN_HEADER = b"x-omi-rules-admin-token"
PUBLIC_PREFIXES = ("/webhook/", "/setup")
PUBLIC_PATHS = frozenset({"/health"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_HOSTS_LOGGED = 100  # distinct refused Host values logged, so a flood cannot fill the log


def admin_token(settings: Settings) -> tuple[str, bool]:
    """The configured admin token, else the one kept under the data folder (made at first
    start). Returns (token, created now)."""
    if settings.admin_token:
        return settings.admin_token, False
    return read_or_create(Path(settings.data_dir) / TOKEN_FILE)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def host_name(value: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheck:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.patterns = [host_name(a) if a != "*" else "*" for a in allowed]
        self.patterns.extend(LOOPBACK_NAMES)

    def allows(self, host: str) -> bool:
        name = host_name(host)
        return any(p == "*" or p == name or fnmatch.fnmatchcase(name, p) for p in self.patterns)


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def presented_token(scope: dict[str, Any]) -> str:
    token = _header(scope, ADMIN_HEADER)
    if token:
        return token.strip()
    auth = _header(scope, b"authorization")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""


class AccessMiddleware:
    """ASGI middleware applying the Host check and the admin token (see module docs)."""

    def __init__(self, app: Any, *, token: str, hosts: HostCheck) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = hosts
        self._logged: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not self.hosts.allows(host):
            self._log_host(host)
            await _refuse(send, 421, f"host {host_name(host)!r} is not in allowed_hosts")
            return
        path = scope.get("path", "")
        if not is_public(path):
            given = presented_token(scope).encode()
            if not given or not hmac.compare_digest(given, self.token):
                await _refuse(
                    send,
                    401,
                    "admin token required (Authorization: Bearer <token>; "
                    "see OMI_RULES_ADMIN_TOKEN or data/admin-token)",
                )
                return
        await self.app(scope, receive, send)

    def _log_host(self, host: str) -> None:
        name = host_name(host)
        if name in self._logged or len(self._logged) >= MAX_HOSTS_LOGGED:
            return
        self._logged.add(name)
        log.warning(
            "refused a request for host %r: add it to allowed_hosts (OMI_RULES_ALLOWED_HOSTS) "
            "if this server is reached under that name",
            name[:200],
        )


async def _refuse(send: Any, status: int, reason: str) -> None:
    body = msgspec.json.encode({"error": reason})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
