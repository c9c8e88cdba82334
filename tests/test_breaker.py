"""The circuit breaker per target, through real HTTP: a target answering 503 is left alone
for the cool-off while other targets keep delivering, then probed once."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from engine.server.breaker import Breakers
from tests.server_helpers import LiveServer, server_settings, write_rules
from tests.servers import Received, Reply, TargetServer
from tests.test_delivery import live_actions, post_live
from tests.wait import wait_until

COOLOFF = 2.0


class FlakyTarget(TargetServer):
    """Answers 503 `failures` times, then 200; records when each request arrived."""

    def __init__(self, failures: int) -> None:
        self.arrivals: list[float] = []
        self._left = failures
        self._arrivals_lock = threading.Lock()
        super().__init__(respond=self._answer)

    def _answer(self, request: Received) -> Reply:
        with self._arrivals_lock:
            self.arrivals.append(time.monotonic())
            self._left -= 1
            return Reply(503, "down for maintenance") if self._left >= 0 else Reply(200, "ok")


@pytest.fixture
def flaky() -> FlakyTarget:
    server = FlakyTarget(failures=6).start()
    yield server  # type: ignore[misc]
    server.stop()


def test_a_failing_target_opens_its_circuit_and_others_keep_delivering(
    tmp_path: Path,
    flaky: FlakyTarget,
    target: TargetServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="omi_rules.breaker")
    retry = {"base_delay": 0.05, "max_delay": 0.2, "max_attempts": 8, "jitter": 0.0}
    settings = server_settings(tmp_path, retry=retry, breaker_failures=5, breaker_cooloff=COOLOFF)
    write_rules(
        Path(settings.rules),
        f"""
    - id: failing
      trigger: memory
      do: [{{http: {{url: "{flaky.url}/hook", json: {{a: 1}}}}}}]
    - id: other
      trigger: memory
      do: [{{http: {{url: "{target.url}/hook", json: {{a: 1}}}}}}]
    """,
    )
    with LiveServer(settings) as server:
        post_live(server)
        wait_until(lambda: len(flaky.arrivals) >= 5, what="five failed attempts")
        # open: a new event's action to another target is delivered; the failing target's
        # actions (the old one and the new one) wait, using no attempt
        post_live(server, "memory-personal-discarded.json")
        target.wait_for(2, timeout=10)
        assert len(flaky.arrivals) == 5
        waiting = [a for a in live_actions(server) if a["rule_id"] == "failing"]
        assert sorted(a["attempts"] for a in waiting) == [0, 5]
        assert all(a["status"] == "pending" for a in waiting)

        # after the cool-off one probe (it fails: open again), then another (it succeeds)
        wait_until(
            lambda: all(
                a["status"] == "delivered"
                for a in live_actions(server)
                if a["rule_id"] == "failing"
            ),
            timeout=15,
            what="the failing target's actions to be delivered after it recovers",
        )
        failing = [a for a in live_actions(server) if a["rule_id"] == "failing"]
    arrivals = flaky.arrivals
    assert len(arrivals) == 8  # 5 failures, a failed probe, a good probe, the waiting one
    assert arrivals[5] - arrivals[4] >= COOLOFF - 0.1  # no attempt while open
    assert arrivals[6] - arrivals[5] >= COOLOFF - 0.1  # a failed probe opens it again
    assert sum(a["attempts"] for a in failing) == 8  # one per request: waiting used none
    key = f"http:127.0.0.1:{flaky.url.rsplit(':', 1)[1]}"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"circuit open for {key} after 5 consecutive") for m in messages)
    assert f"circuit closed for {key}: it answered again" in messages


def test_half_open_lets_one_probe_through_and_a_success_closes() -> None:
    breakers = Breakers(threshold=2, cooloff=10.0)
    breakers.failed("t", 0.0, "503")
    assert breakers.blocked(1.0) == [] and not breakers.is_open("t")
    breakers.failed("t", 1.0, "503")
    assert breakers.blocked(5.0) == ["t"] and breakers.half_open(5.0) == []
    assert breakers.blocked(11.0) == [] and breakers.half_open(11.0) == ["t"]
    breakers.claimed("t", 11.0)  # the probe
    assert breakers.blocked(11.5) == ["t"] and breakers.half_open(11.5) == []
    breakers.failed("t", 12.0, "503")  # the probe failed: open for another cool-off
    assert breakers.blocked(21.0) == ["t"] and breakers.half_open(22.0) == ["t"]
    breakers.claimed("t", 22.0)
    breakers.succeeded("t")
    assert not breakers.is_open("t") and breakers.blocked(22.0) == []
