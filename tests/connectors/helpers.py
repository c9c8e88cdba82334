"""Render and send through a connector the way the engine does, with real clients."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import msgspec

from engine.connector import Connector, Delivered, RenderEnv, SendEnv
from engine.outbound import OutboundGuard, make_client
from engine.secrets import Secrets


def render(
    connector: Connector,
    options: Mapping[str, Any],
    *,
    secrets: Mapping[str, str] | None = None,
    **env: Any,
) -> msgspec.Struct:
    """Options as a rule gives them (templates already rendered) -> the connector's request."""
    store = Secrets(dict(secrets or {}))
    decoded = msgspec.convert(dict(options), connector.Options)
    problems = connector.validate(decoded)
    if problems:
        raise ValueError(f"options do not validate: {problems}")
    render_env = RenderEnv(secret=store.lookup(placeholders=False), has_secret=store.has, **env)
    return connector.render(decoded, render_env)


def send(
    connector: Connector,
    request: msgspec.Struct,
    *,
    secrets: Mapping[str, str] | None = None,
    guard: OutboundGuard | None = None,
    idempotency_key: str = "",
    event_body: Callable[[str], bytes] | None = None,
    data_dir: str = "data",
) -> Delivered:
    """`connector.send(request)` with a guarded client that follows redirects, then closed."""
    store = Secrets(dict(secrets or {}))
    guard = guard or OutboundGuard()

    async def run() -> Delivered:
        async with make_client(guard) as client:
            env = SendEnv(
                client=client,
                secret=store.lookup(placeholders=False),
                guard=guard.check,
                idempotency_key=idempotency_key,
                event_body=event_body,
                data_dir=data_dir,
            )
            return await connector.send(request, env)

    return asyncio.run(run())


def send_plain(connector: Connector, request: msgspec.Struct) -> Delivered:
    """Send with a bare httpx.AsyncClient and SendEnv's default guard."""

    async def run() -> Delivered:
        async with httpx.AsyncClient() as client:
            env = SendEnv(client=client, secret=Secrets().lookup(placeholders=False))
            return await connector.send(request, env)

    return asyncio.run(run())


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
