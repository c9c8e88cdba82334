"""Per-user setup through real HTTP (web.setup_pages, engine.server.user_settings): the
page, its one-time form tokens, the admin-only replacement of a set value, /setup/completed,
two users' own Slack webhooks on two loopback targets, and the database file holding no
user secret."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from litestar.testing import TestClient

from engine.server.app import create_app
from tests.server_helpers import ADMIN, ADMIN_TOKEN, server_settings, write_rules
from tests.servers import Reply, TargetServer
from tests.wait import wait_until
from web.setup_pages import TESTS_PER_CLIENT, WRITES_PER_CLIENT

SLACK_RULE = """
- id: user-slack
  trigger: memory
  settings:
    - name: slack_webhook_url
      label: Slack webhook URL
      help: Apps > Incoming Webhooks
      type: url
      secret: true
    - name: channel_note
      label: A note
      required: false
  do:
    - slack:
        webhook_url: "{{ user.settings.slack_webhook_url }}"
        text: "{{ memory.structured.title }} for {{ user.uid }}"
"""


def memory(title: str) -> dict[str, Any]:
    return {
        "id": f"mem-{title}",
        "created_at": "2026-11-26T03:00:00Z",
        "structured": {"title": title, "overview": "", "category": "work"},
        "transcript_segments": [],
    }


def form_token(page: str) -> str:
    found = re.search(r'name="_form" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def completed(client: TestClient, uid: str) -> bool:
    answer = client.get("/setup/completed", params={"uid": uid})
    assert answer.status_code == 200
    return bool(answer.json()["is_setup_completed"])


def save(client: TestClient, uid: str, **values: str) -> httpx.Response:
    token = form_token(client.get("/setup", params={"uid": uid}).text)
    return client.post("/setup", data={"uid": uid, "_form": token, **values})


def settings_for(tmp_path: Path, **overrides: Any) -> Any:
    settings = server_settings(tmp_path, **overrides)
    write_rules(Path(settings.rules), SLACK_RULE)
    return settings


def test_setup_completed_before_and_after_the_user_saves(tmp_path: Path) -> None:
    with TestClient(app=create_app(settings_for(tmp_path))) as client:
        assert not completed(client, "u1")
        no_uid = client.get("/setup")
        assert no_uid.status_code == 400 and "needs the uid Omi adds" in no_uid.text
        # older Omi backends append ?uid= to a URL that has a query already
        assert '<code id="setup-uid">u1</code>' in client.get("/setup?x=1?uid=u1").text
        page = client.get("/setup", params={"uid": "u1"})
        assert page.status_code == 200
        assert "Slack webhook URL" in page.text and "not set" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        answer = save(client, "u1", slack_webhook_url="https://hooks.slack.com/services/T/B/x1")
        assert answer.status_code == 200, answer.text
        assert "saved slack_webhook_url" in answer.text
        assert completed(client, "u1")  # the optional note is not needed
        assert not completed(client, "u2")
        assert not completed(client, "")


def test_a_post_needs_a_fresh_form_token_for_its_own_uid(tmp_path: Path) -> None:
    url = "https://hooks.slack.com/services/T/B/x1"
    with TestClient(app=create_app(settings_for(tmp_path))) as client:
        no_token = client.post("/setup", data={"uid": "u1", "slack_webhook_url": url})
        assert no_token.status_code == 403
        assert "expired or was already sent" in no_token.text
        token = form_token(client.get("/setup", params={"uid": "u2"}).text)
        other_uid = client.post("/setup", data={"uid": "u1", "_form": token, "note": "x"})
        assert other_uid.status_code == 403
        token = form_token(client.get("/setup", params={"uid": "u1"}).text)
        data = {"uid": "u1", "_form": token, "slack_webhook_url": url}
        assert client.post("/setup", data=data).status_code == 200
        replayed = client.post("/setup", data={**data, "uid": "u2"})
        assert replayed.status_code == 403
        assert "expired or was already sent" in replayed.text
        assert completed(client, "u1") and not completed(client, "u2")


def test_a_set_value_is_never_shown_and_only_the_admin_replaces_it(tmp_path: Path) -> None:
    first = "https://hooks.slack.com/services/T/B/first-secret"
    second = "https://hooks.slack.com/services/T/B/second-secret"
    with TestClient(app=create_app(settings_for(tmp_path))) as client:
        assert save(client, "u1", slack_webhook_url=first).status_code == 200
        page = client.get("/setup", params={"uid": "u1"}).text
        assert "first-secret" not in page and 'data-state="set"' in page
        refused = save(client, "u1", slack_webhook_url=second)
        assert refused.status_code == 403
        assert "owner (admin token) can replace it" in refused.text
        wrong = save(client, "u1", slack_webhook_url=second, admin_token="nope")
        assert wrong.status_code == 403
        replaced = save(client, "u1", slack_webhook_url=second, admin_token=ADMIN_TOKEN)
        assert replaced.status_code == 200, replaced.text
        values = client.app.state.receiver.user_settings.values("u1")
        assert values.values["slack_webhook_url"] == second
        bad = save(client, "u2", slack_webhook_url="ftp://example.com/x")
        assert bad.status_code == 400 and "not an http(s) URL" in bad.text


def test_two_users_each_get_only_their_own_message_and_the_file_holds_no_secret(
    tmp_path: Path,
) -> None:
    first, second = TargetServer().start(), TargetServer().start()
    # loopback targets: the owner trusts 127.0.0.1 (a user's URL otherwise reaches public
    # addresses only)
    settings = settings_for(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    url_1 = f"{first.url}/services/u1-hook-7f3a9c"
    url_2 = f"{second.url}/services/u2-hook-b81e40"
    try:
        with TestClient(app=create_app(settings)) as client:
            assert save(client, "u1", slack_webhook_url=url_1).status_code == 200
            assert save(client, "u2", slack_webhook_url=url_2).status_code == 200
            for uid in ("u1", "u2", "u3"):
                answer = client.post(
                    "/webhook/memory", params={"uid": uid}, json=memory(f"title-{uid}")
                )
                assert answer.status_code == 200, answer.text
            try:
                (got_1,) = first.wait_for(1)
                (got_2,) = second.wait_for(1)
            except TimeoutError as exc:  # say where the message stopped (seen once in CI)
                events = client.get("/api/events", headers=ADMIN).json()
                seen = [(e["uid"], e["decisions"], e["actions"]) for e in events]
                raise AssertionError(f"{exc}; events: {seen}") from None
            assert got_1.path == "/services/u1-hook-7f3a9c"
            assert got_1.json() == {"text": "title-u1 for u1"}
            assert got_2.json() == {"text": "title-u2 for u2"}
            events = client.get("/api/events", headers=ADMIN).json()
            by_uid = {event["uid"]: event for event in events}
            skipped = client.get(f"/api/events/{by_uid['u3']['id']}", headers=ADMIN).json()
            (decision,) = skipped["decisions"]
            assert decision["matched"] is False
            assert decision["reason"] == "user u3 has not set slack_webhook_url (setup)"
            assert skipped["actions"] == []

            def delivered() -> bool:
                actions = client.get("/api/actions", headers=ADMIN).json()
                return len(actions) == 2 and all(a["status"] == "delivered" for a in actions)

            wait_until(delivered, what="both actions delivered")
            shown = client.get("/api/actions", headers=ADMIN).text
            assert "u1-hook-7f3a9c" not in shown and "<secret:user.slack_webhook_url>" in shown
        assert len(first.received) == 1 and len(second.received) == 1
        raw = b"".join(path.read_bytes() for path in tmp_path.glob("omi.db*") if path.is_file())
        assert b"title-u1" in raw  # the events are there...
        assert b"u1-hook-7f3a9c" not in raw and b"u2-hook-b81e40" not in raw  # ...not secrets
    finally:
        first.stop()
        second.stop()


def test_disconnect_removes_settings_and_on_request_the_users_events(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with TestClient(app=create_app(settings)) as client:
        url = "https://hooks.slack.com/services/T/B/x1"
        for uid in ("u1", "u2"):
            assert save(client, uid, slack_webhook_url=url).status_code == 200
            client.post("/webhook/memory", params={"uid": uid}, json=memory(uid))
        token = form_token(client.get("/setup", params={"uid": "u1"}).text)
        kept = client.post("/setup/disconnect", data={"uid": "u1", "_form": token})
        assert "1 setting(s) removed" in kept.text
        assert not completed(client, "u1") and completed(client, "u2")
        assert len(client.get("/api/events", headers=ADMIN).json()) == 2
        assert save(client, "u1", slack_webhook_url=url).status_code == 200  # set anew
        for uid in ("u1", "u2"):  # a live transcript session each, in memory and stored
            call = {"session_id": "s1", "segments": [{"text": "hello", "is_user": True}]}
            assert client.post("/webhook/transcript", params={"uid": uid}, json=call).is_success
        receiver = client.app.state.receiver
        assert live_uids(receiver) == ["u1", "u2"]
        token = form_token(client.get("/setup", params={"uid": "u1"}).text)
        gone = client.post(
            "/setup/disconnect", data={"uid": "u1", "_form": token, "forget_events": "on"}
        )
        assert "2 stored event(s) deleted" in gone.text  # the memory and the call
        events = client.get("/api/events", headers=ADMIN).json()
        assert [event["uid"] for event in events] == ["u2", "u2"]
        actions = client.get("/api/actions", headers=ADMIN).json()
        assert {action["event_id"] for action in actions} == {
            event["id"] for event in events if event["trigger"] == "memory"
        }
        # u1's live session is gone from memory and the store, and never raises its end
        assert live_uids(receiver) == ["u2"]
        assert {session.uid for session in receiver.pipeline.sessions} == {"u2"}


def live_uids(receiver: Any) -> list[str]:
    rows = receiver.store.query("SELECT uid FROM live_sessions ORDER BY uid")
    return [row["uid"] for row in rows]


def test_the_test_button_sends_one_harmless_request_and_shows_the_answer(
    tmp_path: Path,
) -> None:
    target = TargetServer().start()
    settings = settings_for(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    try:
        with TestClient(app=create_app(settings)) as client:
            token = form_token(client.get("/setup", params={"uid": "u1"}).text)
            early = client.post(
                "/setup/test", data={"uid": "u1", "_form": token, "connector": "slack"}
            )
            assert "set slack_webhook_url first" in early.text
            assert save(client, "u1", slack_webhook_url=f"{target.url}/hook-x9").status_code == 200
            token = form_token(client.get("/setup", params={"uid": "u1"}).text)
            tested = client.post(
                "/setup/test", data={"uid": "u1", "_form": token, "connector": "slack"}
            )
            assert tested.status_code == 200
            assert 'Test of slack: <span class="good">works</span> (HTTP 200)' in tested.text
            (request,) = target.wait_for(1)
            assert request.json() == {"text": "omi-rules test: this Slack connection works"}
    finally:
        target.stop()


def test_a_users_url_reaches_loopback_only_when_the_owner_trusts_it(tmp_path: Path) -> None:
    target = TargetServer().start()
    try:
        with TestClient(app=create_app(settings_for(tmp_path))) as client:
            assert save(client, "u1", slack_webhook_url=f"{target.url}/hook").status_code == 200
            token = form_token(client.get("/setup", params={"uid": "u1"}).text)
            tested = client.post(
                "/setup/test", data={"uid": "u1", "_form": token, "connector": "slack"}
            )
            assert "failed" in tested.text and "not a trusted host" in tested.text
            assert target.received == []
    finally:
        target.stop()


def test_tests_and_admin_token_guesses_are_limited(tmp_path: Path) -> None:
    with TestClient(app=create_app(settings_for(tmp_path))) as client:

        def test_slack(uid: str) -> httpx.Response:
            token = form_token(client.get("/setup", params={"uid": uid}).text)
            return client.post(
                "/setup/test", data={"uid": uid, "_form": token, "connector": "slack"}
            )

        answers = [test_slack("u1").status_code for _ in range(6)]
        assert answers == [200, 200, 200, 200, 200, 429]
        assert test_slack("u2").status_code == 200  # per uid
        guesses = [save(client, "u1", admin_token=f"guess-{n}").status_code for n in range(6)]
        assert guesses == [403, 403, 403, 403, 403, 429]
        # the login page counts the same guesses
        login = client.post("/ui/login", data={"token": ADMIN_TOKEN, "next": "/ui"})
        assert login.status_code == 429


def test_a_users_secret_in_a_notify_reply_is_sealed_and_answered_again(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
        - id: reply-with-code
          trigger: memory
          settings:
            - {name: code, secret: true}
          do:
            - notify: {message: "your code is {{ user.settings.code }}"}
        """,
    )
    with TestClient(app=create_app(settings)) as client:
        assert save(client, "u1", code="c0de-5e4f").status_code == 200
        first = client.post("/webhook/memory", params={"uid": "u1"}, json=memory("m"))
        again = client.post("/webhook/memory", params={"uid": "u1"}, json=memory("m"))
        assert first.json() == {"message": "your code is c0de-5e4f"}
        assert again.json() == first.json()  # Omi's retry: the same answer, opened again
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("omi.db*") if path.is_file())
    assert b"c0de-5e4f" not in raw


HA_RULES = """
- id: owner-lights
  trigger: memory
  do:
    - home_assistant:
        url: "{{ secrets.HA_URL }}"
        token: "{{ secrets.HA_TOKEN }}"
        service: light.turn_on
- id: published-lights
  trigger: transcript
  settings:
    - {name: ha_url, type: url}
    - {name: ha_token, secret: true}
  when:
    - keywords: ["lights on"]
  do:
    - home_assistant:
        url: "{{ user.settings.ha_url }}"
        token: "{{ user.settings.ha_token }}"
        service: light.turn_on
"""


def test_a_users_url_never_reaches_a_private_host_only_a_server_secret_names(
    tmp_path: Path,
) -> None:
    """The owner's HA_URL names 127.0.0.1 (another port): a user's ha_url on 127.0.0.1 is
    refused for the test and for deliveries; the owner's own rule still reaches theirs."""
    owner_ha = TargetServer().start()
    internal = TargetServer(default=Reply(body="INTERNAL-ONLY: db_password=hunter2")).start()
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HA_URL={owner_ha.url}\nHA_TOKEN=owner-ha-token-123\n")
    settings = server_settings(tmp_path, secrets=str(secrets))
    write_rules(Path(settings.rules), HA_RULES)
    try:
        with TestClient(app=create_app(settings)) as client:
            uid = "made-up-uid"
            url = f"{internal.url}/admin/secrets?x="
            assert save(client, uid, ha_url=url, ha_token="whatever-1").status_code == 200
            token = form_token(client.get("/setup", params={"uid": uid}).text)
            tested = client.post(
                "/setup/test", data={"uid": uid, "_form": token, "connector": "home_assistant"}
            )
            assert "not a trusted host" in tested.text
            assert "INTERNAL-ONLY" not in tested.text
            call = {"session_id": "s1", "segments": [{"text": "lights on", "is_user": True}]}
            assert client.post("/webhook/transcript", params={"uid": uid}, json=call).is_success
            assert client.post("/webhook/memory", params={"uid": uid}, json=memory("m")).is_success
            store = client.app.state.receiver.store

            def settled() -> list[dict[str, Any]]:
                rows = store.query("SELECT rule_id, status, user_chosen FROM actions")
                done = [r for r in rows if r["status"] not in ("pending", "in_flight")]
                return done if len(done) == 2 else []

            rows = {r["rule_id"]: r for r in wait_until(settled)}
            assert rows["published-lights"]["status"] == "dead"
            assert rows["published-lights"]["user_chosen"] == 1
            assert rows["owner-lights"]["status"] == "delivered"
            assert internal.received == []
            assert len(owner_ha.received) == 1
    finally:
        owner_ha.stop()
        internal.stop()


def test_the_test_button_refuses_a_host_a_planned_action_would_refuse(tmp_path: Path) -> None:
    """A host built from a text setting is refused when an event plans the action; the
    test refuses it too (another rule naming the host does not make it this rule's)."""
    target = TargetServer().start()
    port = urlsplit(target.url).port
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
        - id: owner-hook
          trigger: memory
          do:
            - http: {{url: "http://localhost:{port}/owner", method: POST}}
        - id: user-lights
          trigger: memory
          settings:
            - {{name: host}}
            - {{name: ha_token, secret: true}}
          do:
            - home_assistant:
                url: "http://{{{{ user.settings.host }}}}"
                token: "{{{{ user.settings.ha_token }}}}"
                service: light.turn_on
        """,
    )
    try:
        with TestClient(app=create_app(settings)) as client:
            saved = save(client, "u1", host=f"localhost:{port}", ha_token="token-123")
            assert saved.status_code == 200
            token = form_token(client.get("/setup", params={"uid": "u1"}).text)
            tested = client.post(
                "/setup/test", data={"uid": "u1", "_form": token, "connector": "home_assistant"}
            )
            assert "comes from payload text" in tested.text
            assert target.received == []
    finally:
        target.stop()


def test_no_one_fills_an_unset_setting_next_to_a_stored_secret(tmp_path: Path) -> None:
    """The victim saved only their token (the URL optional): without the admin token no
    later save may add a URL that would receive it, and a first save must set every
    required setting at once."""
    attacker = TargetServer().start()
    settings = server_settings(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    optional_url = "{name: ha_url, type: url, required: false}"
    write_rules(Path(settings.rules), HA_RULES.replace("{name: ha_url, type: url}", optional_url))
    try:
        with TestClient(app=create_app(settings)) as client:
            assert save(client, "victim", ha_token="victims-long-lived-token").status_code == 200
            added = save(client, "victim", ha_url=attacker.url)
            assert added.status_code == 403
            assert "owner (admin token) can replace it" in added.text
            assert "ha_url" not in client.app.state.receiver.user_settings.stored("victim")
            token = form_token(client.get("/setup", params={"uid": "victim"}).text)
            client.post(
                "/setup/test",
                data={"uid": "victim", "_form": token, "connector": "home_assistant"},
            )
            assert attacker.received == []
            # the owner may still add to a user's settings
            owner = save(client, "victim", ha_url=attacker.url, admin_token=ADMIN_TOKEN)
            assert owner.status_code == 200
    finally:
        attacker.stop()
    other = tmp_path / "other"
    other.mkdir()
    with TestClient(app=create_app(settings_for(other))) as client:
        partial = save(client, "u1", channel_note="only the optional one")
        assert partial.status_code == 400
        assert "fill in every required setting at once: Slack webhook URL" in partial.text
        assert client.app.state.receiver.user_settings.stored("u1") == {}


def test_a_pending_retry_never_goes_to_whoever_sets_the_setting_next(tmp_path: Path) -> None:
    """The victim's Slack answers 503, so the action waits for a retry; someone who knows
    the uid disconnects (keeping events) and sets their own webhook: the retry is not
    sent to them (the seal was bound to the victim's value) and the action is dead."""
    victim_slack = TargetServer(default=Reply(status=503, body="down")).start()
    attacker = TargetServer().start()
    retry = {"base_delay": 0.2, "max_delay": 0.2, "max_attempts": 8, "jitter": 0.0}
    settings = settings_for(tmp_path, outbound_allow_hosts=["127.0.0.1"], retry=retry)
    try:
        with TestClient(app=create_app(settings)) as client:
            saved = save(client, "victim", slack_webhook_url=f"{victim_slack.url}/v")
            assert saved.status_code == 200
            title = "victims-private-title"
            posted = client.post("/webhook/memory", params={"uid": "victim"}, json=memory(title))
            assert posted.is_success
            victim_slack.wait_for(1)
            token = form_token(client.get("/setup", params={"uid": "victim"}).text)
            client.post("/setup/disconnect", data={"uid": "victim", "_form": token})
            saved = save(client, "victim", slack_webhook_url=f"{attacker.url}/mine")
            assert saved.status_code == 200
            store = client.app.state.receiver.store

            def dead() -> list[dict[str, Any]]:
                return store.query("SELECT last_error FROM actions WHERE status = 'dead'")

            (row,) = wait_until(dead)
            assert "changed since this was stored" in row["last_error"]
            assert attacker.received == []
    finally:
        victim_slack.stop()
        attacker.stop()


def token_rule(url: str, secret: bool) -> str:
    return f"""
    - id: user-api
      trigger: memory
      settings:
        - {{name: api_token, secret: {str(secret).lower()}}}
      do:
        - http:
            url: "{url}/hook"
            headers: {{Authorization: "Bearer {{{{ user.settings.api_token }}}}"}}
            json: {{title: "{{{{ memory.structured.title }}}}"}}
    """


def test_a_value_saved_before_its_rule_said_secret_is_then_a_secret(tmp_path: Path) -> None:
    """Saved while the rule said `secret: false`; the author then says `secret: true`: at
    the next start the row is encrypted, and the value is sealed in stored requests."""
    target = TargetServer().start()
    settings = server_settings(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    try:
        write_rules(Path(settings.rules), token_rule(target.url, secret=False))
        with TestClient(app=create_app(settings)) as client:
            assert save(client, "u1", api_token="secret_NOTION_abc123").status_code == 200
        write_rules(Path(settings.rules), token_rule(target.url, secret=True))
        with TestClient(app=create_app(settings)) as client:
            store = client.app.state.receiver.store
            (row,) = store.query("SELECT value, secret FROM user_settings")
            assert row["secret"] == 1 and "secret_NOTION_abc123" not in row["value"]
            posted = client.post("/webhook/memory", params={"uid": "u1"}, json=memory("t"))
            assert posted.is_success
            (sent,) = target.wait_for(1)
            assert sent.header("Authorization") == "Bearer secret_NOTION_abc123"
            (action,) = store.query("SELECT request FROM actions")
            assert "secret_NOTION_abc123" not in action["request"]
            assert "<secret:user.api_token:" in action["request"]
    finally:
        target.stop()


def test_rotating_made_up_uids_is_no_way_around_the_limits(tmp_path: Path) -> None:
    """Each save and test is counted per client address too: a fresh uid per request
    does not buy more than TESTS_PER_CLIENT tests or WRITES_PER_CLIENT saves a minute."""
    target = TargetServer().start()
    settings = settings_for(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    try:
        with TestClient(app=create_app(settings)) as client:
            saves, tests = [], []
            for n in range(WRITES_PER_CLIENT + 1):
                uid = f"rnd-{n}"
                saves.append(save(client, uid, slack_webhook_url=f"{target.url}/v").status_code)
                token = form_token(client.get("/setup", params={"uid": uid}).text)
                data = {"uid": uid, "_form": token, "connector": "slack"}
                tests.append(client.post("/setup/test", data=data).status_code)
            assert saves == [200] * WRITES_PER_CLIENT + [429]
            assert tests == [200] * TESTS_PER_CLIENT + [429]
            assert len(target.wait_for(TESTS_PER_CLIENT)) == TESTS_PER_CLIENT
            store = client.app.state.receiver.store
            (row,) = store.query("SELECT COUNT(DISTINCT uid) AS n FROM user_settings")
            assert row["n"] == WRITES_PER_CLIENT
    finally:
        target.stop()


def test_a_successful_test_shows_no_answer_text_a_failed_one_does(tmp_path: Path) -> None:
    """Whoever knows a uid may press Test: a Notion database's JSON is not shown to them,
    only "works (HTTP 200)"; a refusal shows the service's reason."""
    notion = TargetServer(default=Reply(body={"object": "database", "title": "Diary-7f3"})).start()
    settings = server_settings(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    write_rules(
        Path(settings.rules),
        f"""
        - id: user-notion
          trigger: memory
          settings:
            - {{name: notion_token, secret: true}}
            - {{name: database}}
          do:
            - notion:
                api_url: "{notion.url}"
                token: "{{{{ user.settings.notion_token }}}}"
                database_id: "{{{{ user.settings.database }}}}"
                properties: {{Name: "{{{{ memory.structured.title }}}}"}}
        """,
    )
    try:
        with TestClient(app=create_app(settings)) as client:
            saved = save(client, "u1", notion_token="secret_token_1", database="db1")
            assert saved.status_code == 200
            token = form_token(client.get("/setup", params={"uid": "u1"}).text)
            data = {"uid": "u1", "_form": token, "connector": "notion"}
            tested = client.post("/setup/test", data=data)
            assert 'Test of notion: <span class="good">works</span> (HTTP 200)' in tested.text
            assert "Diary-7f3" not in tested.text and 'id="probe-answer"' not in tested.text
            notion.replies.append(
                Reply(status=404, body={"code": "object_not_found", "message": "no such db"})
            )
            token = form_token(client.get("/setup", params={"uid": "u1"}).text)
            failed = client.post("/setup/test", data={**data, "_form": token})
            assert "failed" in failed.text and "no such db" in failed.text
    finally:
        notion.stop()


def test_a_secret_no_key_opens_is_logged_and_may_be_entered_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://hooks.slack.com/services/T/B/"
    lost = server_settings(tmp_path, settings_keys=[Fernet.generate_key().decode()])
    write_rules(Path(lost.rules), SLACK_RULE)
    with TestClient(app=create_app(lost)) as client:
        assert save(client, "u1", slack_webhook_url=url + "first").status_code == 200
    # the key is replaced without keeping the old one
    fresh = server_settings(tmp_path, settings_keys=[Fernet.generate_key().decode()])
    with caplog.at_level(logging.WARNING), TestClient(app=create_app(fresh)) as client:
        assert "1 stored user secret(s) open with none of settings_keys" in caplog.text
        page = client.get("/setup", params={"uid": "u1"}).text
        assert 'data-state="set"' not in page and not completed(client, "u1")
        again = save(client, "u1", slack_webhook_url=url + "again")
        assert again.status_code == 200, again.text
        values = client.app.state.receiver.user_settings.values("u1").values
        assert values == {"slack_webhook_url": url + "again"}
        assert completed(client, "u1")


def test_an_omi_retry_of_a_deleted_event_is_answered_and_not_stored(tmp_path: Path) -> None:
    with TestClient(app=create_app(settings_for(tmp_path))) as client:
        url = "https://hooks.slack.com/services/T/B/x1"
        assert save(client, "u1", slack_webhook_url=url).status_code == 200
        first = client.post("/webhook/memory", params={"uid": "u1"}, json=memory("private-9"))
        assert first.is_success
        token = form_token(client.get("/setup", params={"uid": "u1"}).text)
        data = {"uid": "u1", "_form": token, "forget_events": "on"}
        assert "1 stored event(s) deleted" in client.post("/setup/disconnect", data=data).text
        retry = client.post("/webhook/memory", params={"uid": "u1"}, json=memory("private-9"))
        assert retry.status_code == 200
        store = client.app.state.receiver.store
        assert store.query("SELECT id FROM events WHERE uid = 'u1'") == []


ALIASED = """
- id: owner-lights
  trigger: memory
  do:
    - home_assistant:
        url: "{{ secrets.HA_URL }}"
        token: "{{ secrets.HA_TOKEN }}"
        service: light.turn_on
- id: published-lights
  trigger: transcript
  settings:
    - {name: ha_url, type: url}
    - {name: ha_token, secret: true}
  when:
    - keywords: ["lights on"]
  do:
    - home_assistant:
        url: "{% set s = user.settings %}{{ s.ha_url }}"
        token: "{% for k, v in user.settings | dictsort %}{{ v if k == 'ha_token' }}{% endfor %}"
        service: light.turn_on
"""


def test_a_setting_read_through_an_alias_still_marks_the_action_user_chosen(
    tmp_path: Path,
) -> None:
    """Which actions are user-chosen is counted while rendering, not read from template
    text: `{% set s = user.settings %}` or `| dictsort` reached the owner's guard before
    (which trusts 127.0.0.1 on any port because HA_URL names it)."""
    owner_ha = TargetServer().start()
    internal = TargetServer(default=Reply(body="INTERNAL-ONLY")).start()
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HA_URL={owner_ha.url}\nHA_TOKEN=owner-ha-token-123\n")
    settings = server_settings(tmp_path, secrets=str(secrets))
    write_rules(Path(settings.rules), ALIASED)
    try:
        with TestClient(app=create_app(settings)) as client:
            uid = "made-up-uid"
            answer = save(client, uid, ha_url=f"{internal.url}/admin?x=", ha_token="whatever-1")
            assert answer.status_code == 200
            call = {"session_id": "s1", "segments": [{"text": "lights on", "is_user": True}]}
            assert client.post("/webhook/transcript", params={"uid": uid}, json=call).is_success
            store = client.app.state.receiver.store

            def settled() -> list[dict[str, Any]]:
                rows = store.query("SELECT rule_id, status, user_chosen FROM actions")
                return [r for r in rows if r["status"] not in ("pending", "in_flight")]

            [row] = wait_until(settled)
            assert (row["user_chosen"], row["status"]) == (1, "dead")
            assert internal.received == []
    finally:
        owner_ha.stop()
        internal.stop()
