"""The editor's JSON API over real rule files and a real store: read, save (comments kept,
conflicts refused, drafts for invalid text), create/duplicate/rename/delete, the builder's
model <-> YAML, live test, backtest, test cases, menus and dead-letter purge."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.server.app import create_app
from tests.conftest import fixture_path
from tests.server_helpers import admin_client, server_settings, write_rules
from tests.wait import wait_until

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


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    write_rules(tmp_path / "rules", COMMENTED, "work-log.yaml")
    write_rules(tmp_path / "rules", SECOND_FILE, "pair.yaml")
    with admin_client(create_app(server_settings(tmp_path))) as client:
        yield client


def post_memory(client: Any, name: str = "memory-work.json", uid: str = "user123") -> Any:
    return client.post(
        f"/webhook/memory?uid={uid}",
        content=fixture_path(name).read_bytes(),
        headers={"Content-Type": "application/json"},
    )


def test_read_gives_text_etag_and_builder_model(client: Any) -> None:
    rule = client.get("/api/rules/work-log").json()
    assert rule["file"] == "work-log.yaml"
    assert "# only work" in rule["text"]
    assert len(rule["etag"]) == 64
    assert rule["model"]["when"] == [{"path": "$.structured.category", "equals": "work"}]
    assert client.get("/api/rules/nope").status_code == 404


def test_save_keeps_comments_and_reloads_the_live_rules(client: Any, tmp_path: Path) -> None:
    rule = client.get("/api/rules/work-log").json()
    text = rule["text"].replace("equals: work", "in: [work, business]")
    saved = client.put("/api/rules/work-log", json={"text": text, "etag": rule["etag"]}).json()
    assert saved["status"] == "saved", saved
    on_disk = (tmp_path / "rules" / "work-log.yaml").read_text()
    assert "# only work" in on_disk and "in: [work, business]" in on_disk
    assert "# Work conversations" in on_disk
    # the live rules follow at once (no watcher in tests)
    overview = client.get("/api/rules").json()
    assert "work-log" in [r["id"] for r in overview["rules"]]


def test_a_stale_etag_is_a_conflict_and_nothing_is_overwritten(client: Any, tmp_path: Path) -> None:
    rule = client.get("/api/rules/work-log").json()
    path = tmp_path / "rules" / "work-log.yaml"
    path.write_text(path.read_text() + "# someone else's edit\n")
    answer = client.put("/api/rules/work-log", json={"text": rule["text"], "etag": rule["etag"]})
    assert answer.status_code == 409
    assert "someone else's edit" in answer.json()["text"]
    assert "someone else's edit" in path.read_text()


def test_invalid_text_is_kept_as_a_draft_with_its_line(client: Any, tmp_path: Path) -> None:
    rule = client.get("/api/rules/work-log").json()
    broken = rule["text"].replace("trigger: memory", "trigger: memroy")
    saved = client.put("/api/rules/work-log", json={"text": broken, "etag": rule["etag"]}).json()
    assert saved["status"] == "draft"
    line = broken.splitlines().index("trigger: memroy") + 1
    assert any(e["line"] == line for e in saved["errors"]), saved["errors"]
    assert "trigger: memory\n" in (tmp_path / "rules" / "work-log.yaml").read_text()
    assert "work-log" in [d["id"] for d in client.get("/api/rules").json()["drafts"]]


def test_enabled_switch_changes_one_key_in_a_multi_rule_file(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "rules" / "pair.yaml"
    before = path.read_text()
    answer = client.post("/api/rules/second-of-two/enabled", json={"enabled": False})
    assert answer.status_code == 200, answer.text
    after = path.read_text()
    assert "enabled: false" in after
    assert "# between the two rules" in after and "'two'" in after
    assert after.split("# between")[0] == before.split("# between")[0]
    rules = {r["id"]: r for r in client.get("/api/rules").json()["rules"]}
    assert rules["second-of-two"]["enabled"] is False


def test_create_duplicate_rename_delete(client: Any, tmp_path: Path) -> None:
    starters = {s["name"] for s in client.get("/api/starters").json()}
    assert len(starters) >= 5
    created = client.post("/api/rules", json={"starter": sorted(starters)[0]})
    assert created.status_code == 201, created.text
    copy = client.post("/api/rules/work-log/duplicate", json={"new_id": "work-log-2"})
    assert copy.status_code == 201, copy.text
    assert "# only work" in (tmp_path / "rules" / copy.json()["file"]).read_text()
    renamed = client.post("/api/rules/work-log-2/rename", json={"new_id": "work-log-3"})
    assert renamed.status_code == 200, renamed.text
    ids = [r["id"] for r in client.get("/api/rules").json()["rules"]]
    assert "work-log-3" in ids and "work-log-2" not in ids
    assert client.delete("/api/rules/work-log-3").status_code == 200
    assert "work-log-3" not in [r["id"] for r in client.get("/api/rules").json()["rules"]]
    bad = client.post("/api/rules/work-log/duplicate", json={"new_id": "../../etc/passwd"})
    assert bad.status_code == 400


def test_builder_model_and_yaml_convert_both_ways(client: Any) -> None:
    text = client.get("/api/rules/work-log").json()["text"]
    model = client.post("/api/yaml/parse", json={"text": text}).json()["model"]
    model["when"].append({"keywords": ["deadline"], "fuzzy": True})
    merged = client.post("/api/yaml/merge", json={"text": text, "model": model}).json()
    assert "# only work" in merged["text"] and "deadline" in merged["text"]
    assert merged["model"]["when"][1] == {"keywords": ["deadline"], "fuzzy": True}
    problems = client.post("/api/yaml/parse", json={"text": "id: x\ntrigger: [\n"}).json()
    assert problems["problems"] and problems["problems"][0]["line"] >= 2


def test_live_test_renders_requests_and_says_why_not(client: Any) -> None:
    text = client.get("/api/rules/work-log").json()["text"]
    fired = client.post(
        "/api/dry-run", json={"text": text, "source": {"sample": "memory-work.json"}}
    ).json()
    (report,) = fired["reports"]
    assert report["matched"][0]["rule"] == "work-log"
    assert (
        '"message":"work: Onboarding Guide Review"'
        in report["matched"][0]["actions"][0]["request"]["line"]
    )
    assert "memory.structured.title" in fired["variables"]
    assert fired["milliseconds"] > 0
    skipped = client.post(
        "/api/dry-run",
        json={"text": text, "source": {"sample": "memory-personal-discarded.json"}},
    ).json()
    assert skipped["reports"][0]["skipped"][0]["rule"] == "work-log"
    broken = client.post(
        "/api/dry-run",
        json={
            "text": text.replace("{{ memory", "{{ memory |"),
            "source": {"sample": "memory-work.json"},
        },
    ).json()
    assert broken["problems"] and broken["problems"][0]["line"] > 1


def test_live_test_on_a_captured_event_and_a_pasted_payload(client: Any) -> None:
    assert post_memory(client).status_code == 200
    event_id = client.get("/api/events").json()[0]["id"]
    text = client.get("/api/rules/work-log").json()["text"]
    captured = client.post("/api/dry-run", json={"text": text, "source": {"event_id": event_id}})
    assert captured.json()["reports"][0]["matched"][0]["rule"] == "work-log"
    pasted = client.post(
        "/api/dry-run",
        json={"text": text, "source": {"payload": {"structured": {"category": "work"}}}},
    ).json()
    assert pasted["reports"][0]["matched"][0]["rule"] == "work-log"
    wrong = client.post("/api/dry-run", json={"text": text, "source": {"payload": [1, 2]}})
    assert wrong.status_code == 400 and "payload" in wrong.json()["error"]
    none = client.post("/api/dry-run", json={"text": text, "source": {"event_id": "nope"}})
    assert none.status_code == 404


def test_rules_list_counts_what_fired_in_the_last_day(client: Any) -> None:
    post_memory(client)
    post_memory(client, "memory-personal-discarded.json")
    rules = {r["id"]: r for r in client.get("/api/rules").json()["rules"]}
    assert rules["work-log"]["fired_24h"] == 1
    assert rules["first-of-two"]["fired_24h"] == 2
    assert rules["work-log"]["last_fired"] is not None


def test_backtest_compares_the_edit_with_the_saved_rule(client: Any) -> None:
    post_memory(client)
    post_memory(client, "memory-personal-discarded.json")
    text = client.get("/api/rules/work-log").json()["text"]
    wider = text.replace("equals: work", "not_equals: nothing")
    report = client.post("/api/backtest", json={"text": wider}).json()
    assert report["events"] == 2
    assert report["fired_before"] == 1 and report["fired_after"] == 2
    assert len(report["changes"]) == 1


def test_menus_show_connectors_fields_and_secret_names_only(client: Any) -> None:
    forms = {c["name"]: c for c in client.get("/api/connectors").json()}
    slack = {f["name"]: f for f in forms["slack"]["fields"]}
    assert "text" in slack
    assert any(f["required"] for f in forms["http"]["fields"])
    secrets = client.get("/api/secrets")
    from tests.canary import CANARY, CANARY_NAME

    assert CANARY_NAME in secrets.json() and CANARY not in secrets.text
    names = {s["name"] for s in client.get("/api/samples").json()}
    assert "memory-work.json" in names
    assert client.get("/api/samples/memory-work.json").json()["structured"]["title"]
    assert client.get("/api/samples/../../etc/passwd").status_code == 404


def test_purge_forgets_only_dead_letters(client: Any, tmp_path: Path) -> None:
    post_memory(client)
    receiver = client.app.state.receiver
    wait_until(
        lambda: {a["status"] for a in client.get("/api/actions").json()} == {"delivered"},
        what="the actions to be delivered",
    )
    ids = [a["id"] for a in client.get("/api/actions").json()]
    receiver.store.submit(
        lambda db: db.execute("UPDATE actions SET status = 'dead' WHERE id = ?", [ids[0]])
    ).result()
    purged = client.post("/api/dead-letters/purge", json={}).json()
    assert purged == {"purged": 1}
    assert client.get("/api/dead-letters").json() == []
    assert len(client.get("/api/actions").json()) == len(ids) - 1
