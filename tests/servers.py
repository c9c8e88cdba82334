"""Real servers on loopback for tests: an HTTP target that records requests and answers
as scripted (status, headers, body, delay), started in a thread."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str  # includes the query string
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class TargetServer:
    """Answers each request with `respond(request)` when given, else the next scripted Reply
    (then `default`); records every request."""

    def __init__(
        self, default: Reply | None = None, respond: Callable[[Received], Reply] | None = None
    ) -> None:
        self.received: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = default or Reply()
        self._lock = threading.Lock()
        self._event = threading.Condition(self._lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the sender died mid-request (kill -9): not received
                    self.close_connection = True
                    return
                request = Received(self.command, self.path, dict(self.headers.items()), body)
                with server._lock:
                    if respond is not None:
                        reply = respond(request)
                    else:
                        reply = server.replies.popleft() if server.replies else server.default
                if reply.delay:
                    time.sleep(reply.delay)
                with server._lock:
                    server.received.append(request)
                    server._event.notify_all()
                payload = reply.body
                headers = dict(reply.headers)
                if isinstance(payload, dict | list):
                    payload = json.dumps(payload).encode()
                    headers.setdefault("Content-Type", "application/json; charset=utf-8")
                else:
                    payload = payload.encode() if isinstance(payload, str) else payload
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until `count` requests arrived; return them (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"got {len(self.received)} of {count} requests")
                self._event.wait(left)
            return list(self.received)

    def start(self) -> TargetServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
