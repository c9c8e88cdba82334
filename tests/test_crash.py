"""kill -9 during a burst of webhooks, then restart: every action of every acknowledged
event is delivered. A real `omi-rules serve` process, a real target on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from tests.server_helpers import ServerProcess, free_port, http_rule, write_rules
from tests.servers import Reply, TargetServer
from tests.wait import wait_until

BURST = 500
KILL_AFTER_ACKS = 200


async def burst(url: str, server: ServerProcess) -> set[str]:
    """Post BURST memories concurrently; kill the server after KILL_AFTER_ACKS answers."""
    acked: set[str] = set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(BURST):
        queue.put_nowait(n)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            memory = {"id": f"mem-{n}", "structured": {"title": f"t{n}"}, "discarded": False}
            try:
                response = await client.post(f"{url}/webhook/memory?uid=u1", json=memory)
            except httpx.TransportError:
                continue  # the server is gone: not acknowledged
            if response.status_code == 200:
                acked.add(f"mem-{n}")
                if len(acked) == KILL_AFTER_ACKS:
                    server.kill()

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(sender(client) for _ in range(16)))
    return acked


def delivered_ids(target: TargetServer) -> set[str]:
    return {json.loads(r.body)["event"] for r in list(target.received)}


def test_kill_9_during_a_burst_loses_no_acknowledged_action(tmp_path: Path) -> None:
    target = TargetServer(default=Reply(200, "ok", delay=0.02)).start()
    try:
        write_rules(tmp_path / "rules", http_rule(target.url + "/hook"))
        server = ServerProcess(tmp_path, free_port()).start()
        try:
            acked = asyncio.run(burst(server.url, server))
        finally:
            server.kill()
        delivered_at_kill = delivered_ids(target)
        assert len(acked) >= KILL_AFTER_ACKS
        assert len(delivered_at_kill) < len(acked), "the kill came too late to test anything"

        restarted = ServerProcess(tmp_path, free_port()).start()
        try:

            def drained() -> dict | None:
                # events stored but not acknowledged (killed before the answer) are sent
                # too: wait for the outbox to drain, not only for the acknowledged ones
                health = httpx.get(f"{restarted.url}/health").json()
                busy = {"pending", "in_flight"} & set(health["actions"])
                return health if acked <= delivered_ids(target) and not busy else None

            health = wait_until(
                drained,
                timeout=90,
                interval=0.2,
                what=lambda: f"{len(acked - delivered_ids(target))} acknowledged undelivered",
            )
        finally:
            restarted.stop()
        missing = acked - delivered_ids(target)
        assert not missing, f"{len(missing)} acknowledged event(s) never delivered"
        assert health["actions"].get("pending", 0) == 0
        assert health["actions"].get("in_flight", 0) == 0
        keys = {r.header("Idempotency-Key") for r in target.received}
        assert len(keys) >= len(acked)  # one key per action; a resend reuses its key
    finally:
        target.stop()
