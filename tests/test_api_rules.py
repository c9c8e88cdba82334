"""web.api_rules over real rule files: read, save (comments kept, conflicts refused,
drafts for invalid text), the enabled switch, create/duplicate/rename/delete, and the
builder's model <-> YAML."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.server.app import API_BODY_LIMIT
from tests.editor_api import editor_client, post_memory


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    with editor_client(tmp_path) as client:
        yield client


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


def test_rules_list_counts_what_fired_in_the_last_day(client: Any) -> None:
    post_memory(client)
    post_memory(client, "memory-personal-discarded.json")
    rules = {r["id"]: r for r in client.get("/api/rules").json()["rules"]}
    assert rules["work-log"]["fired_24h"] == 1
    assert rules["first-of-two"]["fired_24h"] == 2
    assert rules["work-log"]["last_fired"] is not None


def test_an_api_body_over_the_limit_is_refused_before_it_is_read(client: Any) -> None:
    too_big = b'{"text": "' + b"x" * API_BODY_LIMIT + b'"}'
    answer = client.post(
        "/api/yaml/parse", content=too_big, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    fits = client.post("/api/yaml/parse", json={"text": "id: a\ntrigger: memory\ndo: []\n"})
    assert fits.status_code == 200
