"""Attacks on a server facing the internet, each through real HTTP (uvicorn on loopback):
one test (or a few) per threat of SECURITY.md, named after it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.servers import TargetServer
from tests.wait import wait_until

HA_TOKEN = "ha-token-very-secret-7781"


def transcript(text: str) -> list[dict[str, object]]:
    return [{"text": text, "speaker": "SPEAKER_00", "is_user": True, "start": 0.0, "end": 2.0}]


def post_json(server: LiveServer, endpoint: str, body: object, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/webhook/{endpoint}?uid=attacker",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )


def settled_actions(server: LiveServer, count: int) -> list[dict[str, object]]:
    """The outbox once `count` actions are delivered or dead."""

    def settled() -> list[dict[str, object]]:
        actions = httpx.get(f"{server.url}/api/actions", headers=ADMIN).json()
        done = [a for a in actions if a["status"] in ("delivered", "dead")]
        return done if len(done) >= count else []

    return wait_until(settled)


def everything_stored(tmp_path: Path) -> bytes:
    """The database files and every file the connectors wrote."""
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


# -- 1. secrets read through a payload -------------------------------------------------


def test_payload_text_naming_a_secret_never_becomes_the_secret(
    tmp_path: Path, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMI_RULES_SECRET_HA_TOKEN", HA_TOKEN)
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
        - id: echo
          trigger: transcript
          do:
            - notify: {{message: "Heard: {{{{ segments | transcript }}}}"}}
            - log: {{message: "{{{{ segments | transcript }}}}"}}
            - http:
                url: "{target.url}/hook"
                headers: {{Authorization: "Bearer {{{{ secrets.HA_TOKEN }}}}"}}
                json: {{heard: "{{{{ segments | transcript }}}}"}}
        """,
    )
    forged_seal = "<secret:HA_TOKEN:" + "0" * 32 + ">"
    text = f"token <secret:HA_TOKEN> and {forged_seal} and <secret:NOPE>"
    with LiveServer(settings) as server:
        first = post_json(server, "transcript", transcript(text), **{"X-Omi-Idempotency-Key": "k1"})
        again = post_json(server, "transcript", transcript(text), **{"X-Omi-Idempotency-Key": "k1"})
        (received,) = target.wait_for(1)
        actions = settled_actions(server, 2)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() == {"message": f"Heard: You: {text}"}
    # the rule's own secret is sent where the rule put it, the payload's text as text
    assert received.header("Authorization") == f"Bearer {HA_TOKEN}"
    assert received.json() == {"heard": f"You: {text}"}
    assert sorted(a["status"] for a in actions) == ["delivered", "delivered"]
    assert HA_TOKEN.encode() not in everything_stored(tmp_path)


# -- 9. a secret with surrounding whitespace ------------------------------------------


def test_a_secret_with_surrounding_whitespace_is_sent_trimmed_and_never_stored(
    tmp_path: Path, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMI_RULES_SECRET_HA_TOKEN", f"  {HA_TOKEN}\n")
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
        - id: lights
          trigger: memory
          do:
            - home_assistant:
                url: "{target.url}"
                token: "{{{{ secrets.HA_TOKEN }}}}"
                service: light.turn_on
        """,
    )
    with LiveServer(settings) as server:
        assert post_json(server, "memory", {"id": "m1"}).status_code == 200
        (received,) = target.wait_for(1)
        shown = httpx.get(f"{server.url}/api/actions", headers=ADMIN).text
    assert received.header("Authorization") == f"Bearer {HA_TOKEN}"
    assert HA_TOKEN not in shown
    assert "<secret:HA_TOKEN>" in shown
    assert HA_TOKEN.encode() not in everything_stored(tmp_path)


# -- 2. the API is open -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/events",
        "/api/actions",
        "/api/rules",
        "/api/rejections",
        "/api/dead-letters",
        "/schema",
    ],
)
def test_everything_but_webhooks_setup_and_health_needs_the_admin_token(
    tmp_path: Path, path: str
) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        anonymous = httpx.get(server.url + path)
        wrong = httpx.get(server.url + path, headers={"Authorization": "Bearer nope"})
        admin = httpx.get(server.url + path, headers=ADMIN)
        public = [
            httpx.get(server.url + "/health").status_code,
            httpx.get(server.url + "/setup/completed?uid=u").status_code,
        ]
    assert anonymous.status_code == wrong.status_code == 401
    assert "admin token required" in anonymous.json()["error"]
    assert admin.status_code == 200
    assert public == [200, 200]


def test_retry_through_the_api_needs_the_admin_token(tmp_path: Path) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        response = httpx.post(server.url + "/api/actions/1/retry")
    assert response.status_code == 401


def test_without_a_configured_admin_token_one_is_made_and_kept(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, admin_token=None)
    with LiveServer(settings) as server:
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        made = httpx.get(server.url + "/api/events", headers={"Authorization": f"Bearer {token}"})
        default = httpx.get(server.url + "/api/events", headers=ADMIN)
    with LiveServer(settings) as server:  # a restart keeps it
        kept = httpx.get(server.url + "/api/events", headers={"Authorization": f"Bearer {token}"})
    assert len(token) >= 32
    assert (tmp_path / "data" / "admin-token").stat().st_mode & 0o077 == 0
    assert [made.status_code, default.status_code, kept.status_code] == [200, 401, 200]


def test_an_unknown_host_header_is_refused(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, allowed_hosts=["omi.example.com"])
    with LiveServer(settings) as server:
        rebound = httpx.get(server.url + "/health", headers={"Host": "evil.example"})
        named = httpx.get(server.url + "/health", headers={"Host": "omi.example.com"})
        loopback = httpx.get(server.url + "/health")
        webhook = httpx.post(
            server.url + "/webhook/memory?uid=u",
            json={"id": "m"},
            headers={"Host": "evil.example"},
        )
    assert rebound.status_code == webhook.status_code == 421
    assert "allowed_hosts" in rebound.json()["error"]
    assert named.status_code == loopback.status_code == 200


@pytest.mark.parametrize(
    ("endpoint", "content_type"),
    [
        ("memory", "text/plain"),
        ("memory", "application/x-www-form-urlencoded"),
        ("memory", "multipart/form-data; boundary=x"),
        ("memory", None),
        ("transcript", "text/plain;charset=UTF-8"),
        ("day-summary", None),
        ("audio", None),
        ("audio", "text/plain"),
    ],
)
def test_a_web_page_cannot_post_events_without_naming_the_content_type(
    tmp_path: Path, endpoint: str, content_type: str | None
) -> None:
    """What a browser sends cross-site without a preflight is refused (415)."""
    headers = {"Content-Type": content_type} if content_type else {}
    body = b"\x00\x00" if endpoint == "audio" else b'{"id": "m", "segments": []}'
    with LiveServer(server_settings(tmp_path)) as server:
        response = httpx.post(
            f"{server.url}/webhook/{endpoint}?uid=u&sample_rate=8000",
            content=body,
            headers=headers,
        )
        events = httpx.get(server.url + "/api/events", headers=ADMIN).json()
    assert response.status_code == 415
    assert events == []


# -- 5. invalid UTF-8 inside a JSON string --------------------------------------------


@pytest.mark.parametrize("endpoint", ["memory", "transcript", "day-summary"])
def test_invalid_utf8_in_a_json_string_is_a_recorded_400(tmp_path: Path, endpoint: str) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        response = httpx.post(
            f"{server.url}/webhook/{endpoint}?uid=u",
            content=b'{"id": "m\xff\xfe", "segments": [], "summary": "x"}',
            headers={"Content-Type": "application/json"},
        )
        rejections = httpx.get(server.url + "/api/rejections", headers=ADMIN).json()
    assert response.status_code == 400
    assert "not UTF-8 JSON" in response.json()["error"]
    assert [r["status"] for r in rejections] == [400]


# -- 6. path traversal through templated file paths ------------------------------------


def test_a_uid_cannot_write_outside_the_data_folder(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
        - id: per-user-log
          trigger: memory
          do:
            - log: {path: "users/{{ uid }}.jsonl", message: "{{ memory.id }}"}
            - log: {path: "by-title/{{ memory.structured.title }}.jsonl"}
        """,
    )
    with LiveServer(settings) as server:
        response = httpx.post(
            f"{server.url}/webhook/memory?uid=../../../../escape/x",
            json={"id": "m1", "structured": {"title": "../../../escape/y"}},
        )
        (event,) = httpx.get(server.url + "/api/events", headers=ADMIN).json()
        detail = httpx.get(f"{server.url}/api/events/{event['id']}", headers=ADMIN).json()
    assert response.status_code == 200
    errors = [a["last_error"] for a in detail["actions"]]
    assert all("leads outside the data folder" in (e or "") for e in errors), errors
    assert [a["status"] for a in detail["actions"]] == ["error", "error"]
    assert not (tmp_path.parent / "escape").exists()
    assert [p for p in tmp_path.rglob("*.jsonl")] == []


# -- 11. dedupe keys, alias bombs, a locked database, replays --------------------------


def test_a_memory_id_cannot_forge_another_users_dedupe_key(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
        - id: tell
          trigger: memory
          do:
            - notify: {message: "Saved {{ memory.structured.title }}"}
        """,
    )
    forged = {"id": "x\nmemory:victim:memory-42", "structured": {"title": "attacker's"}}
    victims = {"id": "memory-42", "structured": {"title": "my meeting"}}
    with LiveServer(settings) as server:
        httpx.post(f"{server.url}/webhook/memory?uid=mallory", json=forged)
        answer = httpx.post(f"{server.url}/webhook/memory?uid=victim", json=victims)
        statuses = [
            e["status"] for e in httpx.get(server.url + "/api/events", headers=ADMIN).json()
        ]
    assert answer.json() == {"message": "Saved my meeting"}
    assert statuses == ["processed", "processed"]


def test_an_alias_bomb_in_a_rule_file_is_refused_quickly_on_live_reload(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, watch_rules=True)
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    with LiveServer(settings) as server:
        (Path(settings.rules) / "bomb.yaml").write_text("\n".join(levels) + "\n")

        def reported() -> list[str]:
            errors = httpx.get(server.url + "/api/rules", headers=ADMIN, timeout=5).json()
            return [e for e in errors["errors"] if "alias" in e]

        (error,) = wait_until(reported)
        health = httpx.get(server.url + "/health", timeout=5)
    assert "bomb.yaml" in error and "expand too far" in error
    assert health.status_code == 200


def test_a_locked_database_gets_a_503_before_omi_gives_up(tmp_path: Path) -> None:
    import sqlite3

    settings = server_settings(tmp_path, answer_deadline=1.0)
    with LiveServer(settings) as server:
        other = sqlite3.connect(settings.db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            # Omi waits 15 s; a server that waited its busy timeout out would time out here
            locked = httpx.post(f"{server.url}/webhook/memory?uid=u", json={"id": "m1"}, timeout=8)
        finally:
            other.execute("ROLLBACK")
            other.close()
        retried = httpx.post(f"{server.url}/webhook/memory?uid=u", json={"id": "m1"}, timeout=8)
        events = httpx.get(server.url + "/api/events", headers=ADMIN).json()
    assert locked.status_code == 503
    assert retried.status_code == 200
    assert [e["status"] for e in events] == ["processed"]  # the retry is not a "duplicate"


def test_a_replayed_signed_audio_chunk_is_recorded_once(tmp_path: Path) -> None:
    from engine.server import signing

    secret = "whsec_test_replay"
    settings = server_settings(tmp_path, signing_secret=secret)
    write_rules(Path(settings.rules), "- {id: keep, trigger: audio, do: [{record: {}}]}")
    chunk = b"\x10\x00\xf0\xff" * 4000
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Omi-Signature": signing.sign(secret, "u", chunk),
    }
    url = "/webhook/audio?uid=u&sample_rate=8000"
    with LiveServer(settings) as server:
        answers = [httpx.post(server.url + url, content=chunk, headers=headers) for _ in range(3)]
        events = httpx.get(server.url + "/api/events", headers=ADMIN).json()
        settled_actions(server, 1)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert sorted(e["status"] for e in events) == ["duplicate", "duplicate", "processed"]
    (wav,) = (tmp_path / "data" / "recordings").rglob("*.wav")
    assert wav.stat().st_size == 44 + len(chunk)
