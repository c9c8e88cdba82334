"""The editor API's tests share one rules folder: a commented one-rule file and a two-rule
list file, served by the whole app through Litestar's TestClient with the admin token."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.server.app import create_app
from tests.conftest import fixture_path
from tests.server_helpers import admin_client, server_settings, write_rules

COMMENTED = """
# Work conversations, posted to a log (a comment the editor must keep).
id: work-log
description: Work memories
trigger: memory
when:
  - path: $.structured.category   # only work
    equals: work
do:
  - log:
      message: "work: {{ memory.structured.title }}"
"""

SECOND_FILE = """
- id: first-of-two
  trigger: memory
  do:
    - log: {message: "one"}
# between the two rules
- id: second-of-two
  trigger: memory
  enabled: true
  do:
    - log: {message: 'two'}
"""


@contextmanager
def editor_client(tmp_path: Path, db: str | None = None) -> Iterator[Any]:
    write_rules(tmp_path / "rules", COMMENTED, "work-log.yaml")
    write_rules(tmp_path / "rules", SECOND_FILE, "pair.yaml")
    settings = server_settings(tmp_path, **({"db": db} if db else {}))
    with admin_client(create_app(settings)) as client:
        yield client


def post_memory(client: Any, name: str = "memory-work.json", uid: str = "user123") -> Any:
    return client.post(
        f"/webhook/memory?uid={uid}",
        content=fixture_path(name).read_bytes(),
        headers={"Content-Type": "application/json"},
    )
