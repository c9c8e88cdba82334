"""A user of a published Omi app completes setup in Debian's Chromium: the Auth URL opens
the setup page, they paste their Slack webhook URL, save, press Test (their own webhook
gets one "omi-rules test" message and the page shows Slack's answer), and /setup/completed
turns true. The page never shows the saved secret, and nothing breaks the CSP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.config import Settings
from tests.server_helpers import LiveServer, server_settings, write_rules
from tests.servers import TargetServer


@pytest.fixture
def slack_target() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_settings(tmp_path: Path) -> Settings:
    write_rules(
        tmp_path / "rules",
        """
        id: user-slack
        trigger: memory
        settings:
          - name: slack_webhook_url
            label: Slack webhook URL
            help: "In Slack: Apps > Incoming Webhooks > Add to Slack, copy the URL."
            type: url
            secret: true
        do:
          - slack:
              webhook_url: "{{ user.settings.slack_webhook_url }}"
              text: "{{ memory.structured.title }}"
        """,
        "published.yaml",
    )
    # the user's "Slack" is a loopback target here, which the owner must trust
    return server_settings(tmp_path, outbound_allow_hosts=["127.0.0.1"])


def is_completed(server: LiveServer, uid: str) -> bool:
    answer = httpx.get(f"{server.url}/setup/completed", params={"uid": uid}, timeout=10)
    return bool(answer.json()["is_setup_completed"])


def test_a_user_completes_setup_in_the_browser(
    page: Any,
    live_server: LiveServer,
    slack_target: TargetServer,
    console_errors: list[str],
    shot: Callable[[Any, str], Path],
) -> None:
    webhook = f"{slack_target.url}/services/T000/B000/alice-secret-9d2f"
    assert not is_completed(live_server, "alice")

    page.goto("/setup?uid=alice")
    assert page.text_content("#setup-state") == "not complete"
    assert page.text_content("#setting-slack_webhook_url .state") == "not set"
    assert "Incoming Webhooks" in page.text_content("#setting-slack_webhook_url .help")
    shot(page, "setup-empty")

    page.fill("#field-slack_webhook_url", webhook)
    page.click("#setup-save")
    page.wait_for_selector("#setup-notice")
    assert page.text_content("#setup-notice") == "saved slack_webhook_url"
    assert page.text_content("#setup-state") == "complete"
    assert page.text_content("#setting-slack_webhook_url .state") == "set"
    assert "alice-secret-9d2f" not in page.content()
    assert is_completed(live_server, "alice")
    assert not is_completed(live_server, "bob")

    page.click("#test-slack")
    page.wait_for_selector("#probe-result")
    assert "Test of slack: works (HTTP 200)" in " ".join(page.text_content("#probe-result").split())
    assert page.query_selector("#probe-answer") is None  # a success shows no answer text
    (sent,) = slack_target.wait_for(1)
    assert sent.path == "/services/T000/B000/alice-secret-9d2f"
    assert sent.json() == {"text": "omi-rules test: this Slack connection works"}
    shot(page, "setup-complete")
    assert console_errors == []  # no CSP refusal, no script error

    # a second save of the secret without the admin token is refused, the value kept
    page.fill("#field-slack_webhook_url", "https://hooks.slack.com/services/other")
    page.click("#setup-save")
    page.wait_for_selector("#setup-error")
    assert "can replace it" in page.text_content("#setup-error")
    values = live_server.receiver.user_settings.values("alice").values
    assert values["slack_webhook_url"] == webhook

    page.check("#forget-events")
    page.click("#disconnect")
    page.wait_for_selector("#setup-notice")
    assert page.text_content("#setup-notice").startswith("disconnected: 1 setting(s) removed")
    assert page.text_content("#setup-state") == "not complete"
    assert not is_completed(live_server, "alice")
    # the refused save's page came with its 403, which Chromium logs; nothing else
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]
