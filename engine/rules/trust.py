"""Trusted hosts: the hosts the server's owner wrote, as opposed to hosts from payload text.

A host is trusted when it is named literally in a rule's action options (defaults
included: Slack's `api_url`, Notion's API), in the value of a configured secret (a secret
may be a URL, `http://homeassistant.local:8123`, or a bare host), or in the setting
`outbound_allow_hosts` (exact names, or `*.example.com` for its subdomains). Only the
literal text of a template counts: in `https://{{ x }}.example.com` the host depends on
the payload, so nothing is trusted.

An action whose host is not trusted is refused when it is planned (engine.runtime.planner); the
outbound guard lets an untrusted host (a redirect hop) reach public addresses only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# a template's code, replaced by a character no host may hold before looking for hosts
_TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_NOT_A_HOST = "\x00"
_URL_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#\s]*)")
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_BARE_HOST = re.compile(r"^\[?[A-Za-z0-9.:-]+\]?(:\d{1,5})?$")


def normal_host(host: str) -> str | None:
    """`host` lower-cased without a trailing dot (IPs in their usual form), or None when it
    is not a host name or IP address at all."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    return host if _HOST_NAME.match(host) else None


def _authority_host(authority: str) -> str | None:
    try:
        host = urlsplit(f"//{authority}").hostname
    except ValueError:
        return None
    return normal_host(host) if host else None


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def literal_hosts(value: Any) -> frozenset[str]:
    """Hosts of the URLs written literally in `value` (strings, nested in dicts and lists);
    a host that a template's code can change is left out."""
    hosts = set()
    for text in _strings(value):
        literal = _TEMPLATE_CODE.sub(_NOT_A_HOST, text)
        for match in _URL_AUTHORITY.finditer(literal):
            if _NOT_A_HOST in match.group(1):
                continue
            host = _authority_host(match.group(1))
            if host:
                hosts.add(host)
    return frozenset(hosts)


def hosts_in_values(values: Iterable[str]) -> frozenset[str]:
    """Hosts named by secret values: a URL's host, or a value that is a bare host."""
    hosts: set[str] = set()
    for value in values:
        value = value.strip()
        if "://" in value:
            hosts |= literal_hosts(value)
        elif _BARE_HOST.match(value):
            host = _authority_host(value)
            if host and ("." in host or ":" in host or host == "localhost"):
                hosts.add(host)
    return frozenset(hosts)


def pattern_matches(pattern: str, host: str) -> bool:
    """`example.com` matches itself; `*.example.com` matches its subdomains."""
    pattern = pattern.strip().rstrip(".").lower()
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == (normal_host(pattern) or pattern)


@dataclass(frozen=True)
class HostTrust:
    """Whether a host was named by the owner: `trust(host)`."""

    hosts: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()

    def __call__(self, host: str) -> bool:
        normal = normal_host(host)
        if normal is None:
            return False
        return normal in self.hosts or any(pattern_matches(p, normal) for p in self.patterns)

    def including(self, hosts: frozenset[str]) -> HostTrust:
        return HostTrust(self.hosts | hosts, self.patterns)


def refusal(host: str) -> str:
    """Why an action to `host` is not planned (shown by dry-run, kept in history)."""
    return (
        f"refused: host {host!r} comes from payload text "
        "(not named in the rule, its secrets or outbound_allow_hosts)"
    )
