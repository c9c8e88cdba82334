"""Small fakes of real services on loopback: each answers like the service would.

`ServiceServer` is a threaded HTTP server whose answer to every request comes from a
function of that request, so a fake can check the token, the path and the body the way
Slack, Notion or Home Assistant do, and answer with their error bodies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import Received, Reply

Respond = Callable[[Received], Reply]


class ServiceServer:
    """Answers each request with `respond(request)`, recording every request."""

    def __init__(self, respond: Respond) -> None:
        self.received: list[Received] = []
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Received(self.command, self.path, dict(self.headers.items()), body)
                with lock:
                    server.received.append(request)
                reply = respond(request)
                payload = reply.body
                headers = dict(reply.headers)
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload).encode()
                    headers.setdefault("Content-Type", "application/json; charset=utf-8")
                elif isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"


@contextmanager
def serving(respond: Respond) -> Iterator[ServiceServer]:
    server = ServiceServer(respond)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join()


def bearer_token(request: Received) -> str | None:
    """The token of `Authorization: Bearer <token>`, else None."""
    scheme, _, token = (request.header("Authorization") or "").partition(" ")
    return token if scheme == "Bearer" and token else None
