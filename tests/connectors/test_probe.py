"""Connector.probe, the setup page's test request, against loopback fakes: Slack posts one
test message, Notion reads the database, Home Assistant asks `GET /api/`; a refusal is the
service's own answer, never an exception; a connector without it has no test."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec

from connectors.home_assistant import connector as home_assistant
from connectors.http import connector as http
from connectors.notion import connector as notion
from connectors.slack import connector as slack
from engine.connector import Connector, Probe, SendEnv, probe_of
from engine.outbound import OutboundGuard, make_client
from engine.secrets import Secrets
from tests.connectors.services import bearer_token, serving
from tests.servers import Received, Reply

TOKEN = "secret-token-0c1d"


def probe(connector: Connector, options: Mapping[str, Any]) -> Probe:
    test = probe_of(connector)
    assert test is not None
    guard = OutboundGuard()

    async def run() -> Probe:
        async with make_client(guard) as client:
            env = SendEnv(
                client=client, secret=Secrets().lookup(placeholders=False), guard=guard.check
            )
            return await test(msgspec.convert(dict(options), connector.Options), env)

    return asyncio.run(run())


def fake_services(request: Received) -> Reply:
    if request.path == "/slack/hook":
        return Reply(200, "ok")
    if request.path == "/slack/revoked":
        return Reply(404, "no_service")
    if bearer_token(request) != TOKEN:
        return Reply(
            401, {"object": "error", "code": "unauthorized", "message": "API token is invalid."}
        )
    if request.method == "GET" and request.path == "/v1/databases/db123":
        return Reply(200, {"object": "database", "id": "db123"})
    if request.method == "GET" and request.path.startswith("/v1/databases/"):
        return Reply(
            404,
            {"object": "error", "code": "object_not_found", "message": "Could not find database"},
        )
    if request.method == "GET" and request.path == "/api/":
        return Reply(200, {"message": "API running."})
    return Reply(404, "404: Not Found")


def test_slack_posts_one_test_message_and_shows_the_answer() -> None:
    with serving(fake_services) as service:
        works = probe(slack, {"webhook_url": service.url + "/slack/hook", "text": "{{ x }}"})
        revoked = probe(slack, {"webhook_url": service.url + "/slack/revoked", "text": "x"})
    assert works == Probe(ok=True, status=200, answer="ok")
    assert revoked == Probe(ok=False, status=404, answer="no_service")
    first = service.received[0]
    assert first.method == "POST" and first.json() == {
        "text": "omi-rules test: this Slack connection works"
    }


def test_notion_reads_the_database() -> None:
    with serving(fake_services) as service:
        base = {"api_url": service.url, "token": TOKEN}
        works = probe(notion, {**base, "database_id": "db123"})
        missing = probe(notion, {**base, "database_id": "nope"})
        bad_token = probe(notion, {**base, "token": "wrong", "database_id": "db123"})
    assert (
        works.ok and works.status == 200 and works.answer == '{"object": "database", "id": "db123"}'
    )
    assert missing == Probe(
        ok=False, status=404, answer="object_not_found: Could not find database"
    )
    assert bad_token == Probe(ok=False, status=401, answer="unauthorized: API token is invalid.")
    assert [r.method for r in service.received] == ["GET", "GET", "GET"]
    assert service.received[0].header("Notion-Version") == "2022-06-28"


def test_home_assistant_asks_whether_the_api_runs() -> None:
    with serving(fake_services) as service:
        works = probe(
            home_assistant, {"url": service.url, "token": TOKEN, "service": "light.turn_on"}
        )
        refused = probe(home_assistant, {"url": service.url, "token": "x", "event": "e"})
    assert works == Probe(ok=True, status=200, answer='{"message": "API running."}')
    assert refused.ok is False and refused.status == 401
    assert service.received[0].path == "/api/" and service.received[0].method == "GET"


def test_a_connector_without_a_test_request_has_none() -> None:
    assert probe_of(http) is None
