"""A loopback HTTP target that never finishes: it sends the status line and headers at once,
then one body byte every `interval` seconds until the client hangs up. A per-read timeout
never fires against it; only a total deadline ends the request. It records when each
connection opened and closed, and how many were open at once."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Connection:
    opened: float
    closed: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.closed is None else self.closed - self.opened


class DripServer:
    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.connections: list[Connection] = []
        self.most_open = 0  # the most connections open at the same time
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def closed(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if c.closed is not None]

    def start(self) -> DripServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _address = self._sock.accept()
            except OSError:
                return
            connection = Connection(time.monotonic())
            with self._lock:
                self.connections.append(connection)
                self.most_open = max(self.most_open, self._open())
            threading.Thread(target=self._drip, args=(client, connection), daemon=True).start()

    def _open(self) -> int:  # with the lock held
        return sum(1 for c in self.connections if c.closed is None)

    def _drip(self, client: socket.socket, connection: Connection) -> None:
        try:
            with client:
                client.settimeout(self.interval)
                self._read_request(client)
                client.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 1000000\r\n\r\n"
                )
                while not self._stopped.is_set():
                    try:
                        if client.recv(1) == b"":  # the client hung up
                            return
                    except TimeoutError:
                        client.sendall(b".")
        except OSError:
            return
        finally:
            with self._lock:
                connection.closed = time.monotonic()

    @staticmethod
    def _read_request(client: socket.socket) -> None:
        data = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            try:
                chunk = client.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        while len(body) < length and time.monotonic() < deadline:
            try:
                chunk = client.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            body += chunk
