"""web.api_data: the editor's menus (connectors' form fields, secret names only, samples)
and purging dead letters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.editor_api import editor_client, post_memory
from tests.wait import wait_until


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    with editor_client(tmp_path) as client:
        yield client


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


def test_the_editor_api_is_in_the_openapi_docs(client: Any) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    for path in ("/api/rules", "/api/rules/{rule_id}", "/api/dry-run", "/api/backtest"):
        assert path in paths, sorted(paths)
    assert not any(path.startswith("/ui") for path in paths)
