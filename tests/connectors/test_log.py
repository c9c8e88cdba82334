"""log: one JSON line per send, appended to a file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from connectors.log import connector as log
from engine.connector import SendEnv
from engine.errors import DeliveryError
from tests.connectors.helpers import render, send

EVENT = {"id": "conv-1", "structured": {"title": "Launch review", "emoji": "🚀"}}


def env(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {
        "data_dir": str(tmp_path / "data"),
        "event_id": "evt-1",
        "uid": "user123",
        "rule_id": "log-everything",
        "received_at": 1714550400.5,
        "event": EVENT,
        **extra,
    }


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends write under ./data (SendEnv's default data folder): here, tmp_path/data."""
    monkeypatch.chdir(tmp_path)


def test_two_sends_append_two_json_lines_to_the_default_file(tmp_path: Path) -> None:
    first = render(log, {}, **env(tmp_path))
    second = render(log, {"message": {"said": "ünïcode ✓", "n": 2}}, **env(tmp_path))
    assert first.path == str(tmp_path / "data" / "actions.jsonl")

    assert send(log, first).response == f"appended to {first.path}"
    send(log, second)

    text = Path(first.path).read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == 2
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [
        {
            "received_at": 1714550400.5,
            "rule": "log-everything",
            "uid": "user123",
            "event_id": "evt-1",
            "message": EVENT,
        },
        {
            "received_at": 1714550400.5,
            "rule": "log-everything",
            "uid": "user123",
            "event_id": "evt-1",
            "message": {"said": "ünïcode ✓", "n": 2},
        },
    ]


def test_a_given_path_is_created_with_its_folders(tmp_path: Path) -> None:
    path = tmp_path / "data" / "logs" / "2024" / "omi.jsonl"
    send(log, render(log, {"path": str(path), "message": "hello"}, **env(tmp_path)))
    (line,) = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["message"] == "hello"


def test_a_path_that_cannot_be_written_is_a_delivery_error(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "a-folder"
    folder.mkdir(parents=True)
    with pytest.raises(DeliveryError) as caught:
        send(log, render(log, {"path": str(folder)}, **env(tmp_path)))
    assert caught.value.connector == "log"
    assert caught.value.url == str(folder)
    assert caught.value.message.startswith("cannot append: [Errno 21] Is a directory")
    assert os.listdir(folder) == []


def test_concurrent_sends_never_interleave_lines(tmp_path: Path) -> None:
    """Long lines from sends running at once stay whole (one write per line)."""
    requests = [
        render(log, {"message": str(n) * 100_000}, **env(tmp_path, event_id=f"evt-{n}"))
        for n in range(10)
    ]

    async def send_all() -> None:
        client_env = SendEnv(client=None, secret=str)  # type: ignore[arg-type]
        await asyncio.gather(*(log.send(request, client_env) for request in requests))

    asyncio.run(send_all())
    lines = Path(requests[0].path).read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["event_id"] for line in lines) == sorted(
        f"evt-{n}" for n in range(10)
    )


@pytest.mark.parametrize(
    "path", ["../escape.jsonl", "logs/../../escape.jsonl", "/tmp/escape.jsonl", "."]
)
def test_a_path_outside_the_data_folder_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="outside the data folder|not a file name"):
        render(log, {"path": path}, **env(tmp_path))


def test_a_symlink_out_of_the_data_folder_is_refused_when_sent(tmp_path: Path) -> None:
    request = render(log, {"path": "links/x.jsonl"}, **env(tmp_path))
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "links").symlink_to(outside)
    with pytest.raises(DeliveryError, match="outside the data folder"):
        send(log, request)
    assert list(outside.iterdir()) == []


def test_a_relative_data_folder_writes_where_it_rendered(tmp_path: Path) -> None:
    """`make run` uses data_dir "data": the sent path is not joined to it a second time."""
    request = render(log, {"message": "hi"}, **{**env(tmp_path), "data_dir": "data"})
    assert request.path == "data/actions.jsonl"
    send(log, request, data_dir="data")
    assert (tmp_path / "data" / "actions.jsonl").read_text().count("\n") == 1
    assert not (tmp_path / "data" / "data").exists()
