"""The canary: a secret set for the whole test run, searched for wherever a secret must
never show (see conftest's `_canary_never_leaks`)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CANARY_NAME = "CANARY"
CANARY = f"canary-{secrets.token_hex(12)}"


class CanaryWatch(logging.Handler):
    """A log handler that notes every record holding the canary; also looks at every HTTP
    answer the tests' clients read and, at the end, at every file under a folder."""

    def __init__(self, needle: str = CANARY) -> None:
        super().__init__(level=logging.DEBUG)
        self.needle = needle
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if self.needle in text:
            self.leaks.append(f"log {record.name}: {text[:300]}")

    def answer(self, response: httpx.Response) -> None:
        if not response.is_stream_consumed:
            return  # a streamed answer the test reads itself
        if self.needle.encode() in response.content:
            self.leaks.append(f"HTTP answer to {response.request.method} {response.request.url}")

    @contextmanager
    def installed(self) -> Iterator[None]:
        root, ours = logging.getLogger(), logging.getLogger("omi_rules")
        level = ours.level
        root.addHandler(self)
        ours.setLevel(logging.DEBUG)  # every line omi-rules may write, not only warnings
        original = httpx.Client.send
        watch = self

        def send(client: httpx.Client, *args: Any, **kwargs: Any) -> httpx.Response:
            response = original(client, *args, **kwargs)
            watch.answer(response)
            return response

        httpx.Client.send = send  # type: ignore[method-assign]
        try:
            yield
        finally:
            httpx.Client.send = original  # type: ignore[method-assign]
            ours.setLevel(level)
            root.removeHandler(self)

    def scan_files(self, folder: Path) -> None:
        needle = self.needle.encode()
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    if needle in path.read_bytes():
                        self.leaks.append(f"file {path}")
                except OSError:
                    continue
