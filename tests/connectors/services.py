"""Small fakes of real services on loopback: each answers like the service would.

`serving(respond)` runs a TargetServer whose answer to every request comes from a function
of that request, so a fake can check the token, the path and the body the way Slack,
Notion or Home Assistant do, and answer with their error bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.servers import Received, Reply, TargetServer

Respond = Callable[[Received], Reply]


@contextmanager
def serving(respond: Respond) -> Iterator[TargetServer]:
    """A loopback server whose every answer is `respond(request)`, like the real service's."""
    server = TargetServer(respond=respond).start()
    try:
        yield server
    finally:
        server.stop()


def bearer_token(request: Received) -> str | None:
    """The token of `Authorization: Bearer <token>`, else None."""
    scheme, _, token = (request.header("Authorization") or "").partition(" ")
    return token if scheme == "Bearer" and token else None
