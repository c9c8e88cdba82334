"""Log: append one JSON line per action to a file; the demo connector, needs no secrets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.errors import DeliveryError
from engine.paths import OutsideDataFolder, data_file, inside_data


class LogOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    path: str | None = None  # inside the data folder; default: <data dir>/actions.jsonl
    message: Any | UnsetType = UNSET  # default: the whole event


class LogRequest(Struct):
    path: str
    line: str  # one JSON document, no newline


class Log(ConnectorBase[LogOptions, LogRequest]):
    name = "log"
    summary = "Append a JSON line to a file (default data/actions.jsonl)"
    Options = LogOptions
    Request = LogRequest

    def render(self, options: LogOptions, env: RenderEnv) -> LogRequest:
        path = data_file(env.data_dir, options.path or "actions.jsonl")
        record = {
            "received_at": env.received_at,
            "rule": env.rule_id,
            "uid": env.uid,
            "event_id": env.event_id,
            "message": options.message if options.message is not UNSET else env.event,
        }
        return LogRequest(path, msgspec.json.encode(record).decode())

    async def send(self, request: LogRequest, env: SendEnv) -> Delivered:
        try:
            path = inside_data(env.data_dir, request.path)  # again: the folder may have changed
        except OutsideDataFolder as exc:
            raise DeliveryError(str(exc), connector=self.name, url=request.path) from None
        try:
            await asyncio.to_thread(_append_line, Path(path), request.line)
        except OSError as exc:
            raise DeliveryError(
                f"cannot append: {exc}", connector=self.name, url=request.path, retryable=True
            ) from None
        return Delivered(response=f"appended to {request.path}")


def _append_line(path: Path, line: str) -> None:
    # one write() on an O_APPEND file: lines from concurrent sends never interleave
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


connector = Log()
