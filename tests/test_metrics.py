"""GET /metrics through real HTTP: what was posted and delivered shows as exact samples."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.server.metrics import Metrics
from tests.conftest import fixture_path
from tests.server_helpers import ADMIN, LiveServer, http_rule, server_settings, write_rules
from tests.servers import Reply, TargetServer
from tests.wait import wait_until

JSON = {"Content-Type": "application/json"}
LOG_RULE = """
- id: log-memories
  trigger: memory
  do:
    - log: {}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


def scrape(server: LiveServer) -> Samples:
    answer = httpx.get(f"{server.url}/metrics", headers=ADMIN, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


def actions_with(server: LiveServer, status: str, count: int) -> list[dict[str, object]]:
    def reached() -> list[dict[str, object]] | None:
        actions = httpx.get(f"{server.url}/api/actions", headers=ADMIN, timeout=10).json()
        return actions if [a["status"] for a in actions] == [status] * count else None

    return wait_until(reached, what=f"{count} action(s) {status}")


def post_memory(server: LiveServer, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/webhook/memory?uid=user123", content=body, headers=JSON, timeout=10
    )


def test_events_fires_deliveries_and_latency_are_counted(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(tmp_path / "rules", LOG_RULE)
    memory = fixture_path("memory-work.json").read_bytes()
    with LiveServer(settings) as server:
        assert post_memory(server, memory).status_code == 200
        assert post_memory(server, memory).status_code == 200  # the same memory id: a repeat
        assert post_memory(server, b"not json").status_code == 400
        actions_with(server, "delivered", 1)
        scraped = scrape(server)

    events = "omi_rules_events_total"
    assert value(scraped, events, trigger="memory", status="processed") == 1
    assert value(scraped, events, trigger="memory", status="duplicate") == 1
    assert value(scraped, events, trigger="memory", status="rejected") == 1
    assert value(scraped, "omi_rules_rejections_total", trigger="memory", code="400") == 1
    assert value(scraped, "omi_rules_rule_fires_total", rule="log-memories") == 1
    actions = "omi_rules_actions_total"
    assert value(scraped, actions, connector="log", outcome="delivered") == 1
    assert value(scraped, actions, connector="log", outcome="dead") is None
    for status in ("pending", "in_flight", "dead"):
        assert value(scraped, "omi_rules_outbox_actions", status=status) == 0
    latency = "omi_rules_webhook_request_seconds"
    assert value(scraped, f"{latency}_count", trigger="memory") == 3
    assert value(scraped, f"{latency}_bucket", trigger="memory", le="+Inf") == 3
    assert 0 < (value(scraped, f"{latency}_sum", trigger="memory") or 0) < 30
    # matching ran once: the repeat and the bad body never reached the rules
    assert value(scraped, "omi_rules_matching_seconds_count", trigger="memory") == 1


def test_retries_and_dead_letters_are_counted_and_the_outbox_read_at_scrape(
    tmp_path: Path,
) -> None:
    target = TargetServer(default=Reply(status=503, body="busy")).start()
    try:
        settings = server_settings(
            tmp_path,
            retry={"base_delay": 0.05, "max_delay": 0.1, "max_attempts": 2, "jitter": 0.0},
        )
        write_rules(tmp_path / "rules", http_rule(target.url))
        with LiveServer(settings) as server:
            assert post_memory(server, fixture_path("memory-work.json").read_bytes()).is_success
            actions_with(server, "dead", 1)
            scraped = scrape(server)
    finally:
        target.stop()
    actions = "omi_rules_actions_total"
    assert value(scraped, actions, connector="http", outcome="retry") == 1
    assert value(scraped, actions, connector="http", outcome="dead") == 1
    assert value(scraped, actions, connector="http", outcome="delivered") is None
    assert value(scraped, "omi_rules_outbox_actions", status="dead") == 1
    assert value(scraped, "omi_rules_outbox_actions", status="pending") == 0
    assert value(scraped, "omi_rules_rule_fires_total", rule="to-target") == 1


def test_metrics_need_the_admin_token(tmp_path: Path) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        anonymous = httpx.get(f"{server.url}/metrics", timeout=10)
        wrong = httpx.get(
            f"{server.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
        )
        allowed = httpx.get(f"{server.url}/metrics", headers=ADMIN, timeout=10)
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert "omi_rules_events" not in anonymous.text
    assert allowed.status_code == 200


def test_each_app_counts_in_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # the global registry would refuse a second one
    first.events.labels("memory", "processed").inc()
    assert (
        value(
            samples(first.render().decode()),
            "omi_rules_events_total",
            trigger="memory",
            status="processed",
        )
        == 1
    )
    assert (
        value(
            samples(second.render().decode()),
            "omi_rules_events_total",
            trigger="memory",
            status="processed",
        )
        is None
    )
