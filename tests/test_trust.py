"""Trusted hosts: a URL whose host comes from payload text is refused, through real HTTP
(a LiveServer and loopback targets); hosts the owner wrote keep working."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from engine.rules.trust import HostTrust, hosts_in_values, literal_hosts
from tests.conftest import fixture_path
from tests.server_helpers import LiveServer, server_settings, write_rules
from tests.servers import TargetServer
from tests.test_delivery import live_actions
from tests.wait import wait_until

PAYLOAD_URL_RULE = """
- id: from-payload
  trigger: memory
  do:
    - http: {url: "{{ memory.structured.title }}", json: {a: 1}}
"""


def post_memory_titled(server: LiveServer, title: str) -> None:
    memory = json.loads(fixture_path("memory-work.json").read_text())
    memory["structured"]["title"] = title
    response = httpx.post(f"{server.url}/webhook/memory?uid=user123", json=memory, timeout=10)
    assert response.status_code == 200, response.text


def test_a_url_from_payload_text_is_refused_when_planned(
    tmp_path: Path, target: TargetServer
) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), PAYLOAD_URL_RULE)
    with LiveServer(settings) as server:
        post_memory_titled(server, f"{target.url}/internal/admin")
        (action,) = live_actions(server)
    assert action["status"] == "error"
    assert action["request"] is None
    assert action["last_error"] == (
        "do[0].http: refused: host '127.0.0.1' comes from payload text "
        "(not named in the rule, its secrets or outbound_allow_hosts)"
    )
    assert target.received == []  # an error row is never claimed


def test_outbound_allow_hosts_lets_a_payload_url_through(
    tmp_path: Path, target: TargetServer
) -> None:
    settings = server_settings(tmp_path, outbound_allow_hosts=["127.0.0.1"])
    write_rules(Path(settings.rules), PAYLOAD_URL_RULE)
    with LiveServer(settings) as server:
        post_memory_titled(server, f"{target.url}/allowed")
        (received,) = target.wait_for(1)
        wait_until(lambda: live_actions(server)[0]["status"] == "delivered", what="delivery")
    assert received.path == "/allowed"


def test_a_local_host_named_by_a_secret_still_delivers(
    tmp_path: Path, target: TargetServer
) -> None:
    """Like a local Home Assistant: the rule names only the secret; its value is loopback."""
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"HOOK_URL: {target.url}\n", encoding="utf-8")
    settings = server_settings(tmp_path, secrets=str(secrets))
    write_rules(
        Path(settings.rules),
        """
    - id: to-secret
      trigger: memory
      do:
        - http: {url: "{{ secrets.HOOK_URL }}/api/hook", json: {a: 1}}
    """,
    )
    with LiveServer(settings) as server:
        post_memory_titled(server, "anything")
        (received,) = target.wait_for(1)
        wait_until(lambda: live_actions(server)[0]["status"] == "delivered", what="delivery")
    assert received.path == "/api/hook"


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("http://homeassistant.local:8123/api", {"homeassistant.local"}),
        ("https://{{ x }}.example.com/hook", set()),  # the payload picks the host
        ("http://example.com{{ path }}", set()),  # ".evil.net" would change the host
        ("http://{{ user }}@example.com/", set()),
        ("{{ secrets.BASE }}/hook", set()),
        ("https://hooks.example.com/{{ path }}", {"hooks.example.com"}),
        ("see http://[::1]:8080/x and HTTPS://API.Example.COM.", {"::1", "api.example.com"}),
    ],
)
def test_only_literal_url_hosts_are_trusted(text: str, hosts: set[str]) -> None:
    assert literal_hosts({"url": text, "nested": [{"x": ""}]}) == hosts


def test_secret_values_name_hosts_as_urls_or_bare_hosts() -> None:
    values = ["http://192.168.1.20:8123", "ha.example.lan", "xoxb-123-abc", "long token value"]
    assert hosts_in_values(values) == {"192.168.1.20", "ha.example.lan"}


def test_allow_patterns_cover_subdomains_only_with_a_wildcard() -> None:
    trust = HostTrust(frozenset({"10.0.0.5"}), ("*.example.com", "exact.example.org"))
    assert trust("a.b.example.com") and trust("EXACT.example.org.") and trust("10.0.0.5")
    assert not trust("example.com") and not trust("evilexample.com")
    assert not trust("sub.exact.example.org")
