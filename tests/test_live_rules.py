"""Live reload: editing rules/ takes effect; a broken file keeps its last good rules."""

from __future__ import annotations

import time
from pathlib import Path

from engine.rules.live_rules import LiveRules
from engine.server.app import create_app
from tests.server_helpers import admin_client, server_settings, write_rules

GOOD = """
- id: first
  trigger: memory
  do:
    - log: {}
"""
BROKEN = """
- id: first
  trigger: memory
  do:
    - lgo: {}
"""


def test_broken_file_keeps_last_good_version(tmp_path: Path) -> None:
    write_rules(tmp_path, GOOD, "a.yaml")
    live = LiveRules(str(tmp_path))
    assert [r.id for r in live.reload().rules] == ["first"]
    write_rules(tmp_path, BROKEN, "a.yaml")
    rules = live.reload()
    assert [r.id for r in rules.rules] == ["first"]  # still live
    assert "unknown connector 'lgo'" in str(rules.errors[0])
    (tmp_path / "a.yaml").unlink()
    assert live.reload().rules == []


def test_editing_a_rule_file_reloads_the_server(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, watch_rules=True)
    write_rules(Path(settings.rules), GOOD, "a.yaml")
    with admin_client(create_app(settings)) as client:
        assert [r["id"] for r in client.get("/api/rules").json()["rules"]] == ["first"]
        time.sleep(0.3)  # let the watcher start
        write_rules(Path(settings.rules), GOOD.replace("first", "second"), "b.yaml")
        deadline = time.monotonic() + 10
        ids: list[str] = []
        while time.monotonic() < deadline:
            ids = sorted(r["id"] for r in client.get("/api/rules").json()["rules"])
            if ids == ["first", "second"]:
                break
            time.sleep(0.1)
        assert ids == ["first", "second"]
        write_rules(Path(settings.rules), BROKEN, "a.yaml")
        deadline = time.monotonic() + 10
        body: dict = {}
        while time.monotonic() < deadline:
            body = client.get("/api/rules").json()
            if body["errors"]:
                break
            time.sleep(0.1)
        assert any("unknown connector 'lgo'" in e for e in body["errors"])
        assert sorted(r["id"] for r in body["rules"]) == ["first", "second"]
