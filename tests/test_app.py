"""The HTTP surface through real HTTP: Litestar's test client runs the whole app, with its
lifespan (delivery workers included) and a real loopback target for actions."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import TestClient

from engine.server import signing
from engine.server.app import create_app
from tests.conftest import RULES_DIR, fixture_path
from tests.server_helpers import (
    ADMIN,
    LiveServer,
    admin_client,
    http_rule,
    server_settings,
    write_rules,
)
from tests.servers import Reply, TargetServer
from tests.wait import wait_until

FIXTURE_POSTS = [
    ("memory", "memory-work.json", {}),
    ("memory", "memory-personal-discarded.json", {}),
    ("memory", "memory-extra-fields.json", {}),
    ("memory", "memory-backend-shape.json", {}),
    ("transcript", "transcript-call-1.json", {"session_id": "sess_4b91"}),
    ("transcript", "transcript-call-2.json", {"session_id": "sess_4b91"}),
    ("transcript", "transcript-call-3.json", {"session_id": "sess_4b91"}),
    ("transcript", "transcript-app-shape.json", {}),
    ("day-summary", "day-summary.json", {}),
    ("day-summary", "day-summary-legacy.json", {}),
    ("audio", "audio-speech-16k.pcm", {"sample_rate": "16000"}),
    ("audio", "audio-silence-16k.pcm", {"sample_rate": "16000"}),
]


def post_fixture(
    client: TestClient, endpoint: str, name: str, params: dict[str, str]
) -> httpx.Response:
    body = fixture_path(name).read_bytes()
    kind = "application/octet-stream" if name.endswith(".pcm") else "application/json"
    return client.post(
        f"/webhook/{endpoint}",
        params={"uid": "user123", **params},
        content=body,
        headers={"Content-Type": kind},
    )


def test_every_fixture_is_accepted_and_appears_in_history(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, rules=str(RULES_DIR))
    with admin_client(create_app(settings)) as client:
        assert client.get("/health").json()["rules"] >= 10
        for endpoint, name, params in FIXTURE_POSTS:
            response = post_fixture(client, endpoint, name, params)
            assert response.status_code == 200, (name, response.text)
        events = client.get("/api/events", params={"limit": 100}).json()
        # the speech sample then the silence one: someone spoke, then stopped (raised by us)
        assert len(events) == len(FIXTURE_POSTS) + 2
        assert {e["trigger"] for e in events} == {
            "memory",
            "transcript",
            "audio",
            "day_summary",
            "audio_speech_start",
            "audio_speech_end",
        }
        # the log rule needs no secrets: its lines land in the data folder
        log = Path(settings.data_dir) / "actions.jsonl"
        wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 8)


def test_notify_message_rides_in_the_response(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, rules=str(RULES_DIR))
    with admin_client(create_app(settings)) as client:
        answers = [
            post_fixture(client, "transcript", f"transcript-call-{n}.json", {"session_id": "s"})
            for n in (1, 2, 3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json() == {}
    assert answers[1].json()["message"] == ("Noted: water the plants tonight")
    assert "message" not in answers[2].json()


def test_actions_are_delivered_after_the_response(tmp_path: Path, target: TargetServer) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    with admin_client(create_app(settings)) as client:
        response = post_fixture(client, "memory", "memory-work.json", {})
        assert response.status_code == 200
        (received,) = target.wait_for(1)
        assert received.json() == {"event": "memory_7c41e9", "uid": "user123"}
        assert received.header("Idempotency-Key").endswith(":to-target:0")
        actions = wait_until(
            lambda: [a for a in client.get("/api/actions").json() if a["status"] == "delivered"]
        )
        assert actions[0]["last_status"] == 200


def test_target_failing_three_times_receives_the_action_once(
    tmp_path: Path, target: TargetServer
) -> None:
    target.script(
        Reply(500, "boom"),
        Reply(503, "busy"),
        Reply(429, "slow down", headers={"Retry-After": "0"}),
        Reply(200, "ok"),
    )
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    with admin_client(create_app(settings)) as client:
        assert post_fixture(client, "memory", "memory-work.json", {}).status_code == 200
        target.wait_for(4)
        action = wait_until(
            lambda: next(
                (a for a in client.get("/api/actions").json() if a["status"] == "delivered"), None
            )
        )
        # a later event's action, delivered too, gives a wrong extra delivery its chance
        later = json.loads(fixture_path("memory-work.json").read_bytes())
        later["id"] = "memory_later"
        assert client.post("/webhook/memory?uid=user123", json=later).status_code == 200
        wait_until(
            lambda: len(client.get("/api/actions?status=delivered").json()) == 2,
            what=lambda: f"the later action delivered: {client.get('/api/actions').json()}",
        )
    first_key = target.received[0].header("Idempotency-Key")
    ok = [r for r in target.received if r.header("Idempotency-Key") == first_key]
    assert len(ok) == 4  # three failures, one success: one action, retried
    assert action["attempts"] == 4
    assert len(target.received) == 5  # and the later action's one delivery


def test_permanent_failure_is_a_dead_letter_and_can_be_retried(
    tmp_path: Path, target: TargetServer
) -> None:
    target.script(Reply(404, "no such hook"))
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    with admin_client(create_app(settings)) as client:
        post_fixture(client, "memory", "memory-work.json", {})
        dead = wait_until(lambda: client.get("/api/dead-letters").json())
        assert dead[0]["last_status"] == 404
        assert "no such hook" in dead[0]["last_error"]
        assert client.post(f"/api/actions/{dead[0]['id']}/retry").status_code == 202
        retried = next(a for a in client.get("/api/actions").json() if a["id"] == dead[0]["id"])
        assert retried["attempts"] in (0, 1)  # a fresh count (1 once the retry went out)
        wait_until(lambda: client.get("/api/dead-letters").json() == [])
        target.wait_for(2)
        assert client.post("/api/actions/999999/retry").status_code == 404


def test_omi_retries_are_acknowledged_but_act_once(tmp_path: Path, target: TargetServer) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    body = fixture_path("memory-work.json").read_bytes()
    with admin_client(create_app(settings)) as client:
        for _ in range(3):  # same memory id: Omi's retry after a timeout
            assert (
                client.post(
                    "/webhook/memory?uid=user123",
                    content=body,
                    headers={"Content-Type": "application/json"},
                ).status_code
                == 200
            )
        other = json.loads(body)
        other["id"] = "memory_other"
        for _ in range(2):  # new memory, same idempotency header
            response = client.post(
                "/webhook/memory?uid=user123",
                json=other,
                headers={"X-Omi-Idempotency-Key": "delivery-1"},
            )
            assert response.status_code == 200
        # the repeats planned no action (all are written before the answer), and a
        # delivered action is never sent again: once both are delivered, nothing more comes
        assert len(client.get("/api/actions").json()) == 2
        wait_until(
            lambda: len(client.get("/api/actions?status=delivered").json()) == 2,
            what=lambda: f"both actions delivered: {client.get('/api/actions').json()}",
        )
        health = client.get("/health").json()
    assert len(target.received) == 2
    assert health["duplicates"] == 3


NOTIFY_RULE = """
- id: tell
  trigger: memory
  do:
    - notify: {message: "Saved {{ memory.structured.title }}"}
"""


def post_twice_while_the_database_is_locked(
    tmp_path: Path, on_unlock: str = ""
) -> tuple[list[httpx.Response], list[dict]]:
    """Two deliveries of one memory to a real server, both received while another
    connection holds SQLite's write lock, so neither is on disk when the other arrives."""
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), NOTIFY_RULE)
    server = LiveServer(settings).start()
    body = fixture_path("memory-work.json").read_bytes()
    other = sqlite3.connect(settings.db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")

        def post() -> httpx.Response:
            return httpx.post(
                f"{server.url}/webhook/memory?uid=user123",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )

        with ThreadPoolExecutor(2) as pool:
            pending = [pool.submit(post), pool.submit(post)]
            # both requests are in the app (uvicorn runs one task per request in progress),
            # waiting for the writer
            wait_until(
                lambda: len(server.server.server_state.tasks) == 2,
                what="both requests to reach the server",
            )
            if on_unlock:
                other.execute(on_unlock)
            other.execute("COMMIT")
            answers = [future.result() for future in pending]
        events = httpx.get(f"{server.url}/api/events", headers=ADMIN).json()
    finally:
        other.close()
        server.stop()
    return answers, events


def test_concurrent_duplicates_get_the_first_answer(tmp_path: Path) -> None:
    answers, events = post_twice_while_the_database_is_locked(tmp_path)
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["message"] for a in answers] == ["Saved Onboarding Guide Review"] * 2
    assert sorted(e["status"] for e in events) == ["duplicate", "processed"]


def test_a_duplicate_of_a_delivery_that_failed_to_record_is_not_acknowledged(
    tmp_path: Path,
) -> None:
    # SQLite refusing the insert, as a full disk or an I/O error would
    broken = (
        "CREATE TRIGGER events_broken BEFORE INSERT ON events "
        "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )
    answers, events = post_twice_while_the_database_is_locked(tmp_path, broken)
    # nothing is on disk, so neither delivery may be acknowledged: Omi must retry
    assert [a.status_code for a in answers] == [503, 503]
    assert events == []


@pytest.mark.parametrize(
    ("endpoint", "query", "body", "content_type", "status", "reason"),
    [
        ("memory", "uid=u", b"not json", "application/json", 400, "not JSON"),
        ("memory", "uid=u", b"[1, 2]", "application/json", 400, "expected a JSON object"),
        ("memory", "", b"{}", "application/json", 400, "missing uid"),
        ("memory", "uid=u", b"{}", "application/x-www-form-urlencoded", 415, "content type"),
        (
            "memory",
            "uid=u",
            b'{"transcript_segments": 5}',
            "application/json",
            400,
            "transcript_segments",
        ),
        ("transcript", "uid=u", b'{"segs": []}', "application/json", 400, "segments"),
        ("transcript", "uid=u", b'"text"', "application/json", 400, "expected a list"),
        ("day-summary", "uid=u", b"{}", "application/json", 400, "summary"),
        (
            "audio",
            "uid=u&sample_rate=50",
            b"\x00\x00",
            "application/octet-stream",
            400,
            "sample_rate",
        ),
        ("audio", "uid=u&sample_rate=16000", b"\x00", "application/octet-stream", 400, "odd"),
        ("audio", "uid=u", b"\x00\x00", "application/json", 415, "content type"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_reason(
    tmp_path: Path,
    endpoint: str,
    query: str,
    body: bytes,
    content_type: str,
    status: int,
    reason: str,
) -> None:
    settings = server_settings(tmp_path)
    with admin_client(create_app(settings)) as client:
        response = client.post(
            f"/webhook/{endpoint}?{query}", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == status
        assert reason in response.json()["error"]
        assert "\n" not in response.json()["error"]
        rejections = client.get("/api/rejections").json()
        assert rejections[0]["status"] == status
        assert client.get("/health").json()["rejected"] == 1


@pytest.mark.parametrize("endpoint", ["memory", "transcript", "day-summary"])
def test_deeply_nested_json_is_a_400_not_a_500(tmp_path: Path, endpoint: str) -> None:
    depth = 5000  # far under the body limit, far over the decoder's recursion limit
    body = '{"id": "deep", "summary": "s", "segments": [], "x": ' + "[" * depth + "]" * depth + "}"
    with admin_client(create_app(server_settings(tmp_path))) as client:
        response = client.post(
            f"/webhook/{endpoint}?uid=u", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert "nested" in response.json()["error"]
        assert client.get("/api/rejections").json()[0]["status"] == 400


def test_retry_of_an_out_of_range_action_id_is_a_404(tmp_path: Path) -> None:
    with admin_client(create_app(server_settings(tmp_path))) as client:
        assert client.post(f"/api/actions/{2**64}/retry").status_code == 404
        assert client.post("/api/actions/-1/retry").status_code == 404


def test_a_webhook_answers_json_and_only_to_post(tmp_path: Path) -> None:
    with admin_client(create_app(server_settings(tmp_path))) as client:
        ok = client.post("/webhook/memory?uid=u", json={"id": "m1"})
        wrong = client.get("/webhook/memory?uid=u")
    assert (ok.status_code, ok.headers["content-type"], ok.json()) == (
        200,
        "application/json",
        {},
    )
    assert ok.headers["content-length"] == str(len(ok.content))
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert wrong.json() == {"error": "Method Not Allowed"}


def test_a_body_sent_in_chunks_is_read_whole(tmp_path: Path) -> None:
    body = json.dumps({"id": "m-chunked", "structured": {"title": "x" * 5000}}).encode()
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    with admin_client(create_app(server_settings(tmp_path))) as client:
        answer = client.post(
            "/webhook/memory?uid=u",
            content=iter(chunks),
            headers={"Content-Type": "application/json"},
        )
        (event,) = client.get("/api/events").json()
    assert answer.status_code == 200
    assert event["status"] == "processed"


def test_a_client_gone_before_its_body_is_not_a_rejection(tmp_path: Path) -> None:
    import asyncio

    app = create_app(server_settings(tmp_path))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhook/memory",
        "raw_path": b"/webhook/memory",
        "root_path": "",
        "query_string": b"uid=u",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    with admin_client(app) as client:
        asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
        rejections = client.get("/api/rejections").json()
    assert sent[0]["status"] == 500
    assert rejections == []


def test_serve_freezes_the_startup_heap(tmp_path: Path) -> None:
    import gc

    try:
        with TestClient(create_app(server_settings(tmp_path), freeze_heap=True)):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, body_limits={"audio": 1000, "memory": 1000})
    with admin_client(create_app(settings)) as client:
        response = client.post(
            "/webhook/audio?uid=u&sample_rate=8000",
            content=b"\x00" * 5000,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 413
        huge = client.post(
            "/webhook/memory?uid=u",
            content=b"x" * 10_000,
            headers={"Content-Type": "application/json"},
        )
        assert huge.status_code == 413
        rejections = client.get("/api/rejections").json()
    assert [(r["endpoint"], r["status"], r["size"]) for r in rejections] == [
        ("/webhook/memory", 413, 10_000),
        ("/webhook/audio", 413, 5000),
    ]
    assert rejections[0]["reason"] == "body over 1000 bytes"


def test_signature_is_verified_when_a_secret_is_set(tmp_path: Path) -> None:
    secret = "whsec_test_secret"
    settings = server_settings(tmp_path, signing_secret=secret)
    body = fixture_path("memory-work.json").read_bytes()
    with admin_client(create_app(settings)) as client:

        def post(header: str | None, uid: str = "user123") -> int:
            headers = {"Content-Type": "application/json"}
            if header is not None:
                headers["X-Omi-Signature"] = header
            return client.post(
                f"/webhook/memory?uid={uid}", content=body, headers=headers
            ).status_code

        assert post(signing.sign(secret, "user123", body)) == 200
        assert post(None) == 401
        assert post(signing.sign("whsec_other", "user123", body)) == 401
        assert post(signing.sign(secret, "someone-else", body)) == 401  # uid is signed
        assert post(signing.sign(secret, "user123", body, timestamp=int(time.time()) - 301)) == 401
        assert post("t=" + "9" * 400 + ",v1=00") == 401  # no float overflow, no 500
        rotating = (
            signing.sign("whsec_old", "user123", body)
            + ",v1="
            + signing.compute(
                secret,
                int(signing.parse(signing.sign("whsec_old", "user123", body))[0]),
                "user123",
                body,
            )
        )
        assert post(rotating) == 200


def test_shared_token_in_query_or_header(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, token="s3cret-token")
    with admin_client(create_app(settings)) as client:
        body = fixture_path("memory-work.json").read_bytes()
        headers = {"Content-Type": "application/json"}
        assert (
            client.post("/webhook/memory?uid=u", content=body, headers=headers).status_code == 401
        )
        assert (
            client.post(
                "/webhook/memory?uid=u&token=wrong", content=body, headers=headers
            ).status_code
            == 401
        )
        assert (
            client.post(
                "/webhook/memory?uid=u&token=s3cret-token", content=body, headers=headers
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/webhook/memory?uid=v",
                content=body,
                headers={**headers, "Authorization": "Bearer s3cret-token"},
            ).status_code
            == 200
        )


def test_setup_completed_health_rules_and_openapi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
    - id: needs-secret
      trigger: memory
      uids: [alice]
      do:
        - http: {url: "{{ secrets.HOOK }}"}
    """,
    )
    with admin_client(create_app(settings)) as client:
        assert client.get("/setup/completed?uid=alice").json() == {"is_setup_completed": False}
        rules = client.get("/api/rules").json()
        assert rules["rules"][0]["missing_secrets"] == ["HOOK"]
        assert client.get("/schema/openapi.json").json()["info"]["title"] == "omi-rules"
    monkeypatch.setenv("OMI_RULES_SECRET_HOOK", "http://127.0.0.1:9/hook")
    with admin_client(create_app(server_settings(tmp_path))) as client:
        assert client.get("/setup/completed?uid=alice").json() == {"is_setup_completed": True}
        assert client.get("/setup/completed?uid=bob").json() == {"is_setup_completed": False}


def test_history_masks_secrets(
    tmp_path: Path, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMI_RULES_SECRET_HOOK_TOKEN", "tok-very-secret-123")
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
    - id: with-token
      trigger: memory
      do:
        - http:
            url: "{target.url}/hook"
            headers: {{Authorization: "Bearer {{{{ secrets.HOOK_TOKEN }}}}"}}
    """,
    )
    with admin_client(create_app(settings)) as client:
        post_fixture(client, "memory", "memory-work.json", {})
        (received,) = target.wait_for(1)
        assert received.header("Authorization") == "Bearer tok-very-secret-123"
        event_id = client.get("/api/events").json()[0]["id"]
        detail = client.get(f"/api/events/{event_id}").text
        assert "tok-very-secret-123" not in detail
        assert "<secret:HOOK_TOKEN>" in detail
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("omi.db*"))
    assert b"tok-very-secret-123" not in db_bytes


def test_secrets_in_a_notify_answer_or_an_action_error_are_masked_in_history(
    tmp_path: Path, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMI_RULES_SECRET_DASH_TOKEN", "dash-very-secret-456")
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
    - id: link
      trigger: memory
      do:
        - notify: {{message: "See https://dash.example/?t={{{{ secrets.DASH_TOKEN }}}}"}}
        - http:
            url: "{target.url}/hook"
            headers: {{X-Token: "{{{{ secrets.DASH_TOKEN }}}}\\nX-Evil: 1"}}
    """,
    )
    with admin_client(create_app(settings)) as client:
        answer = post_fixture(client, "memory", "memory-work.json", {})
        assert answer.json()["message"] == "See https://dash.example/?t=dash-very-secret-456"
        repeat = post_fixture(client, "memory", "memory-work.json", {})
        assert repeat.json()["message"] == answer.json()["message"]  # Omi still gets the text
        event_id = client.get("/api/events").json()[-1]["id"]
        shown = client.get("/api/events").text + client.get(f"/api/events/{event_id}").text
        shown += client.get("/api/actions").text
        assert "<secret:DASH_TOKEN>" in shown
        assert "dash-very-secret-456" not in shown
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("omi.db*"))
    assert b"dash-very-secret-456" not in db_bytes


def test_one_memory_under_two_idempotency_keys_acts_once(
    tmp_path: Path, target: TargetServer
) -> None:
    """The developer webhook and the app both deliver the same memory, each with its own
    idempotency key: the memory id still makes the second a repeat, across a restart too."""
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    body = fixture_path("memory-work.json").read_bytes()

    def post(client: TestClient, header: str, key: str) -> None:
        response = client.post(
            "/webhook/memory?uid=user123",
            content=body,
            headers={"Content-Type": "application/json", header: key},
        )
        assert response.status_code == 200

    with admin_client(create_app(settings)) as client:
        post(client, "Idempotency-Key", "developer-delivery-1")
        post(client, "X-Omi-Idempotency-Key", "app-fanout-1")
        wait_until(lambda: client.get("/api/actions?status=delivered").json())
    with admin_client(create_app(settings)) as client:
        post(client, "X-Omi-Idempotency-Key", "app-fanout-2")
        statuses = sorted(e["status"] for e in client.get("/api/events").json())
        # the repeat planned no action, and the one action was delivered before the restart
        actions = client.get("/api/actions").json()
    assert [a["status"] for a in actions] == ["delivered"]
    assert len(target.received) == 1
    assert statuses == ["duplicate", "duplicate", "processed"]


class CrashingConnector:
    """A third-party connector with a bug: its render raises something unexpected."""

    name = "crashing"
    summary = "raises while rendering"
    autoescape_fields = frozenset()
    inline = False

    class Options(msgspec.Struct, forbid_unknown_fields=True):
        text: str = ""

    Request = Options

    def validate(self, options: object) -> list:
        return []

    def required_secrets(self, options: object) -> set:
        return set()

    def render(self, options: object, env: object) -> object:
        raise RuntimeError("connector bug")

    async def send(self, request: object, env: object) -> object:
        raise AssertionError("never sent")


def test_a_bug_in_a_connector_fails_its_action_not_the_event(tmp_path: Path) -> None:
    from engine.connector import default_registry

    registry = default_registry()
    registry.register(CrashingConnector())
    try:
        settings = server_settings(tmp_path)
        write_rules(Path(settings.rules), "- {id: buggy, trigger: memory, do: [{crashing: {}}]}")
        with admin_client(create_app(settings)) as client:
            assert post_fixture(client, "memory", "memory-work.json", {}).status_code == 200
            (event,) = client.get("/api/events").json()
            # the bug fails that rule's action only; the event itself is processed
            assert event["status"] == "processed"
            (action,) = client.get(f"/api/events/{event['id']}").json()["actions"]
            assert action["status"] == "error"
            assert action["last_error"] == "do[0].crashing: RuntimeError: connector bug"
            post_fixture(client, "memory", "memory-personal-discarded.json", {})
            assert len(client.get("/api/events").json()) == 2
            assert len(client.get("/api/events", params={"limit": -1}).json()) == 1
    finally:
        registry._connectors.pop("crashing")
