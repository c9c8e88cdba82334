"""Live reload: editing rules/ takes effect; a broken file keeps its last good rules."""

from __future__ import annotations

from pathlib import Path

from engine.rules.live_rules import LiveRules
from engine.server.app import create_app
from tests.server_helpers import admin_client, server_settings, write_rules
from tests.wait import wait_until

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

        def rule_ids_after_writing(text: str, name: str) -> list[str]:
            # written again on each poll: a write before the watcher starts goes unseen
            write_rules(Path(settings.rules), text, name)
            return sorted(r["id"] for r in client.get("/api/rules").json()["rules"])

        wait_until(
            lambda: (
                rule_ids_after_writing(GOOD.replace("first", "second"), "b.yaml")
                == ["first", "second"]
            ),
            interval=0.5,
            what=lambda: f"both rules live: {client.get('/api/rules').json()}",
        )
        write_rules(Path(settings.rules), BROKEN, "a.yaml")

        def rules_with_errors() -> dict | None:
            body = client.get("/api/rules").json()
            return body if body["errors"] else None

        body = wait_until(rules_with_errors, what="the broken rule file to be reported")
        assert any("unknown connector 'lgo'" in e for e in body["errors"])
        assert sorted(r["id"] for r in body["rules"]) == ["first", "second"]
