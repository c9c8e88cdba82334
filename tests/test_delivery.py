"""Delivery workers against a real loopback target that fails on demand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from engine.config import RetryPolicy
from engine.server.app import create_app
from engine.server.outbox import backoff
from tests.conftest import fixture_path
from tests.drip_server import DripServer
from tests.server_helpers import (
    ADMIN,
    LiveServer,
    admin_client,
    free_port,
    http_rule,
    server_settings,
    write_rules,
)
from tests.servers import Reply, TargetServer
from tests.wait import wait_until


def post_memory(client: TestClient) -> None:
    response = client.post(
        "/webhook/memory?uid=user123",
        content=fixture_path("memory-work.json").read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200


def wait_for_action(client: TestClient, status: str, timeout: float = 15.0) -> dict:
    return wait_until(
        lambda: next((a for a in client.get("/api/actions").json() if a["status"] == status), None),
        timeout,
        what=lambda: f"an action {status}: {client.get('/api/actions').json()}",
    )


def test_retry_after_is_honoured(tmp_path: Path, target: TargetServer) -> None:
    target.script(Reply(429, "slow down", headers={"Retry-After": "2"}))
    retry = {"base_delay": 0.05, "max_delay": 10.0, "max_attempts": 5, "jitter": 0.0}
    settings = server_settings(tmp_path, retry=retry)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    with admin_client(create_app(settings)) as client:
        post_memory(client)
        target.wait_for(1)
        waiting = wait_for_action(client, "pending")
        while waiting["attempts"] == 0:
            waiting = wait_for_action(client, "pending")
        # the next try is scheduled no sooner than Retry-After, not the 0.05 s base delay
        assert waiting["next_attempt_at"] - waiting["updated_at"] >= 2.0 - 0.01
        assert waiting["last_status"] == 429
        assert waiting["last_error"].endswith("/hook: slow down")


def test_refused_connection_retries_then_becomes_a_dead_letter(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(closed))
    with admin_client(create_app(settings)) as client:
        post_memory(client)
        dead = wait_for_action(client, "dead")
    assert dead["attempts"] == settings.retry.max_attempts
    assert "ConnectError" in dead["last_error"]


def test_slow_target_times_out_and_is_retried(tmp_path: Path, target: TargetServer) -> None:
    target.script(Reply(200, "late", delay=1.5))
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
    - id: slow
      trigger: memory
      do:
        - http: {{url: "{target.url}/hook", timeout: 0.5}}
    """,
    )
    with admin_client(create_app(settings)) as client:
        post_memory(client)
        delivered = wait_for_action(client, "delivered")
    assert delivered["attempts"] == 2
    assert len(target.wait_for(2)) == 2


def test_template_failure_is_kept_as_an_error_not_sent(
    tmp_path: Path, target: TargetServer
) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        f"""
    - id: broken-template
      trigger: memory
      do:
        - http: {{url: "{target.url}/hook", body: "{{{{ memory.no_such_field }}}}"}}
        - http: {{url: "{target.url}/marker", body: "sent"}}
    """,
    )
    with admin_client(create_app(settings)) as client:
        post_memory(client)
        action = wait_for_action(client, "error")
        # the marker, planned with it and delivered, shows the workers had their chance
        wait_for_action(client, "delivered")
    assert "no_such_field" in action["last_error"]
    assert action["request"] is None
    assert [r.path for r in target.received] == ["/marker"]


@pytest.mark.parametrize("attempts", [1, 2, 5, 20, 2000])
def test_backoff_grows_and_respects_retry_after(attempts: int) -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0, jitter=0.0)
    assert backoff(policy, attempts, None) == min(60.0, 2 ** (attempts - 1))
    assert backoff(policy, attempts, 45.0) >= 45.0
    jittered = RetryPolicy(base_delay=1.0, max_delay=60.0, jitter=0.25)
    delay = min(60.0, 2 ** (attempts - 1))
    assert 0.75 * delay <= backoff(jittered, attempts, None) <= 1.25 * delay


def test_delivery_resumes_after_the_store_fails_for_a_while(
    tmp_path: Path, target: TargetServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), http_rule(target.url + "/hook"))
    app = create_app(settings)
    store = app.state.receiver.store
    with admin_client(app) as client:
        # a real SQLite failure on every outbox update (as a full disk or I/O error would be)
        store.write_now(
            lambda db: db.execute(
                "CREATE TRIGGER outbox_broken BEFORE UPDATE ON actions "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        )
        post_memory(client)
        wait_until(
            lambda: any("could not claim due actions" in r.getMessage() for r in caplog.records),
            what="the workers to try to claim the action and fail",
        )
        assert target.received == []
        store.write_now(lambda db: db.execute("DROP TRIGGER outbox_broken"))
        target.wait_for(1, timeout=5)
        wait_for_action(client, "delivered")


def test_backoff_never_retries_sooner_than_a_long_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0, jitter=0.25)
    assert backoff(policy, 1, 3600.0) >= 3600.0  # the service asked for an hour
    assert backoff(policy, 1, float("inf")) == 24 * 3600.0  # but never "forever"


def post_live(server: LiveServer, fixture: str = "memory-work.json") -> None:
    response = httpx.post(
        f"{server.url}/webhook/memory?uid=user123",
        content=fixture_path(fixture).read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def live_actions(server: LiveServer) -> list[dict]:
    return httpx.get(
        f"{server.url}/api/actions", params={"limit": 1000}, headers=ADMIN, timeout=10
    ).json()


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer(interval=1.0).start()
    yield server
    server.stop()


def test_a_target_that_drips_bytes_neither_stalls_others_nor_outlives_its_deadline(
    tmp_path: Path, drip: DripServer, target: TargetServer
) -> None:
    """40 actions to a target that sends a byte a second (a per-read timeout never fires):
    the `log` action and the action to another target are delivered while the slow ones
    are in flight, at most workers_per_target connections go to the slow target, and each
    attempt ends at its total deadline (timeout: 2)."""
    settings = server_settings(tmp_path)  # workers_per_target: 4 by default
    slow = "\n".join(
        f'        - http: {{url: "{drip.url}/slow/{i}", timeout: 2}}' for i in range(40)
    )
    write_rules(
        Path(settings.rules),
        f"""
    - id: slow
      trigger: memory
      do:
{slow}
    - id: others
      trigger: memory
      do:
        - log: {{message: "unrelated"}}
        - http: {{url: "{target.url}/fast", json: {{a: 1}}}}
    """,
    )
    with LiveServer(settings) as server:
        post_live(server)
        target.wait_for(1, timeout=10)

        def others_delivered() -> list[dict]:
            actions = [a for a in live_actions(server) if a["rule_id"] == "others"]
            done = [a for a in actions if a["status"] == "delivered"]
            return actions if len(done) == 2 else []

        wait_until(others_delivered, what="the unrelated actions to be delivered")
        slow_actions = [a for a in live_actions(server) if a["rule_id"] == "slow"]
        assert any(a["status"] == "in_flight" for a in slow_actions)
        assert sum(a["status"] == "delivered" for a in slow_actions) == 0

        wait_until(lambda: len(drip.closed()) >= 8, what="two rounds of slow attempts to end")
        timed_out = wait_until(
            lambda: [a for a in live_actions(server) if a["rule_id"] == "slow" and a["last_error"]],
            what="a slow attempt to fail",
        )
    assert "timed out after 2s (total deadline)" in timed_out[0]["last_error"]
    assert drip.most_open <= 4
    durations = [c.duration for c in drip.closed()]
    assert max(durations) < 2 + 1.5, durations  # the deadline, not the 15 s read timeout
