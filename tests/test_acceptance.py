"""End to end, as a user would: the example rules in rules/ pointed at loopback servers
(Slack, Notion and Home Assistant fakes, a real SMTP server). Posting the samples sends
one Slack message, two Notion pages, one email and one Home Assistant call, and each
request is exactly what dry-run showed for it."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.dryrun import dry_run_files
from engine.secrets import Secrets
from engine.server.app import create_app
from tests.conftest import RULES_DIR, fixture_path
from tests.server_helpers import admin_client, server_settings
from tests.servers import Reply, TargetServer
from tests.smtp_server import LoopbackController, Mailbox, run_server
from tests.wait import wait_until

SLACK_PATH = "/services/T000/B000/XXXX"


@pytest.fixture
def services() -> Iterator[dict[str, Any]]:
    slack = TargetServer(default=Reply(200, "ok")).start()
    notion = TargetServer(respond=lambda r: Reply(200, {"object": "page", "id": "p1"})).start()
    hass = TargetServer(respond=lambda r: Reply(200, [])).start()
    mailbox = Mailbox()
    smtp = run_server(mailbox)
    controller: LoopbackController = next(smtp)
    try:
        yield {
            "slack": slack,
            "notion": notion,
            "hass": hass,
            "mailbox": mailbox,
            "smtp": controller,
        }
    finally:
        for server in (slack, notion, hass):
            server.stop()
        smtp.close()


def secrets_for(services: dict[str, Any]) -> dict[str, str]:
    return {
        "SLACK_WEBHOOK_URL": services["slack"].url + SLACK_PATH,
        "NOTION_TOKEN": "secret_notion_token",
        "NOTION_TASKS_DB": "0f3a9c1e2b7d4e8f9a1b2c3d4e5f6a7b",
        "NOTION_API_URL": services["notion"].url,
        "HA_URL": services["hass"].url,
        "HA_TOKEN": "ha-long-lived-token",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(services["smtp"].port),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": "Omi Rules <omi@example.com>",
        "SUMMARY_EMAIL_TO": "me@example.com",
    }


def dry_run_requests(trigger: str, names: list[str], secrets: Secrets) -> dict[str, list[Any]]:
    """Requests by connector that dry-run shows (secrets masked), for these payloads."""
    found: dict[str, list[Any]] = {}
    paths = [str(fixture_path(name)) for name in names]
    for report in dry_run_files(
        trigger, paths, rules_dir=str(RULES_DIR), session="s1", secrets=secrets
    ):
        for matched in report.matched:
            for action in matched.actions:
                found.setdefault(action.connector, []).append(action.request)
    return found


def test_example_rules_deliver_exactly_what_dry_run_showed(
    tmp_path: Path, services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    values = secrets_for(services)
    for name, value in values.items():
        monkeypatch.setenv(f"OMI_RULES_SECRET_{name}", value)
    secrets = Secrets(values)
    expected = dry_run_requests("memory", ["memory-work.json"], secrets)
    summary_expected = dry_run_requests("day_summary", ["day-summary.json"], secrets)
    live_expected = dry_run_requests(
        "transcript", [f"transcript-call-{n}.json" for n in (1, 2, 3)], secrets
    )

    settings = server_settings(tmp_path, rules=str(RULES_DIR))
    with admin_client(create_app(settings)) as client:

        def post(endpoint: str, name: str, query: str = "") -> None:
            response = client.post(
                f"/webhook/{endpoint}?uid=user123{query}",
                content=fixture_path(name).read_bytes(),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200, response.text

        post("memory", "memory-work.json")
        post("day-summary", "day-summary.json")
        for n in (1, 2, 3):
            post("transcript", f"transcript-call-{n}.json", "&session_id=s1")
        wait_until(
            lambda: (
                len(services["slack"].received) >= 1
                and len(services["notion"].received) >= 2
                and len(services["hass"].received) >= 1
                and len(services["mailbox"].envelopes) >= 1
            ),
            timeout=15,
            what="every service to receive its requests",
        )
        # every action is planned before its event is answered, and a settled one is never
        # sent again: once none is pending or in flight, nothing more can arrive
        wait_until(
            lambda: not {"pending", "in_flight"} & set(client.get("/health").json()["actions"]),
            what=lambda: f"actions to settle: {client.get('/health').json()['actions']}",
        )
        dead = client.get("/api/dead-letters").json()
    assert dead == []

    slack, notion, hass = services["slack"], services["notion"], services["hass"]
    assert len(slack.received) == 1
    assert len(notion.received) == 2
    assert len(hass.received) == 1
    assert len(services["mailbox"].envelopes) == 1

    # Slack: exactly the dry-run request
    (shown_slack,) = expected["slack"]
    sent = slack.received[0]
    assert secrets.mask(slack.url + sent.path) == shown_slack["url"]
    assert secrets.mask(sent.json()) == shown_slack["json"]

    # Notion: two pages, each as dry-run showed (headers included)
    shown_pages = sorted(expected["notion"], key=lambda r: str(r["json"]))
    sent_pages = sorted(notion.received, key=lambda r: str(r.json()))
    for shown, page in zip(shown_pages, sent_pages, strict=True):
        assert secrets.mask(notion.url + page.path) == shown["url"]
        assert secrets.mask(page.json()) == shown["json"]
        for header in ("Authorization", "Notion-Version"):
            assert secrets.mask(page.header(header)) == shown["headers"][header]
    assert {p.json()["properties"]["Name"]["title"][0]["text"]["content"] for p in sent_pages} == {
        "Take the onboarding screenshots",
        "Ask Marco to proofread the guide",
    }

    # Home Assistant: one service call, as shown
    (shown_hass,) = live_expected["home_assistant"]
    call = hass.received[0]
    assert secrets.mask(hass.url + call.path) == shown_hass["url"]
    assert call.path == "/api/services/light/turn_on"
    assert call.json() == shown_hass["json"] == {"entity_id": "light.kitchen"}
    assert call.header("Authorization") == "Bearer ha-long-lived-token"

    # Email: the message the SMTP server got is the dry-run message plus Date and Message-ID
    (shown_mail,) = summary_expected["email"]
    mail_from, rcpt_to, raw = services["mailbox"].envelopes[0]
    assert (mail_from, rcpt_to) == ("omi@example.com", ["me@example.com"])
    got = email.message_from_string(secrets.mask(raw.decode()), policy=email.policy.default)
    want = email.message_from_string(shown_mail["message"], policy=email.policy.default)
    assert got["Date"] and got["Message-ID"]
    for header in ("From", "To", "Subject", "Content-Type"):
        assert got[header] == want[header]
    got_parts = [p.get_content().replace("\r\n", "\n") for p in got.iter_parts()]
    want_parts = [p.get_content() for p in want.iter_parts()]
    assert got_parts == want_parts
    assert got["Subject"] == "🧭 Steady day of reviews and errands"


def test_dry_run_of_the_same_payload_is_stable() -> None:
    secrets = Secrets({"SMTP_HOST": "127.0.0.1", "SMTP_FROM": "a@b.c", "SUMMARY_EMAIL_TO": "d@e.f"})
    first = dry_run_requests("day_summary", ["day-summary.json"], secrets)["email"]
    second = dry_run_requests("day_summary", ["day-summary.json"], secrets)["email"]
    assert msgspec.json.encode(first) == msgspec.json.encode(second)
