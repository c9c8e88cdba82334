"""Scale-out acceptance, black-box: two `omi-rules serve` processes (receivers A and B) on
one PostgreSQL database and one rules folder, behind a pretend load balancer. A transcript
session whose calls alternate between them fires once; one memory posted to both at once
acts once; a burst spread over both, with B killed (kill -9) mid-burst, delivers every
acknowledged memory exactly once, B's leased actions taken over by A."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.server_helpers import ADMIN, ServerProcess, free_port, http_rule, write_rules
from tests.servers import Reply, TargetServer
from tests.wait import wait_until

LEASE = 2  # seconds: a killed receiver's claimed actions are taken over this soon
BURST = 1000
KILL_AFTER_POSTS = 300
SENDERS = 16
OUTBOX_BUSY = {"pending", "in_flight"}


@contextmanager
def receivers(tmp_path: Path, db: str, count: int = 2) -> Iterator[list[ServerProcess]]:
    """`count` serve processes on one database and one rules folder (tmp_path/rules), each
    with its own data folder (they are separate machines as far as files go), the first
    one's keys copied into the others' as README "Scaling out" says."""
    servers = []
    try:
        for n in range(count):
            if n:
                (tmp_path / f"data-{n}").mkdir()
                for key in ("seal.key", "settings.key"):
                    shutil.copy(tmp_path / "data-0" / key, tmp_path / f"data-{n}" / key)
            env = {
                "OMI_RULES_OUTBOX_LEASE": str(LEASE),
                "OMI_RULES_DATA_DIR": str(tmp_path / f"data-{n}"),
                "OMI_RULES_SESSION_IDLE": "60",
            }
            servers.append(ServerProcess(tmp_path, free_port(), env=env, db=db).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


def outbox(server: ServerProcess) -> dict[str, int]:
    """The shared outbox's actions by status, as a receiver's /health reports them."""
    actions: dict[str, int] = httpx.get(f"{server.url}/health", timeout=5).json()["actions"]
    return actions


def drained(server: ServerProcess) -> bool:
    return not OUTBOX_BUSY & {status for status, n in outbox(server).items() if n}


def api_actions(server: ServerProcess, rule: str) -> list[dict[str, Any]]:
    """The stored actions of `rule` (all receivers write to one database)."""
    actions = httpx.get(
        f"{server.url}/api/actions", params={"limit": 500}, headers=ADMIN, timeout=5
    ).json()
    return [action for action in actions if action["rule_id"] == rule]


def requests_to(target: TargetServer, path: str) -> list[Any]:
    return [r.json() for r in list(target.received) if r.path == path]


# --- 1. a transcript session alternating between receivers ------------------------------


TRANSCRIPT_RULES = """
- id: lights
  trigger: transcript
  when:
    - keywords: ["turn on the lights"]
  do:
    - http: {{url: "{target}/lights", json: {{session: "{{{{ session.id }}}}"}}}}
- id: wake
  trigger: transcript
  when:
    - keywords: ["hey omi"]
  once_per_session: true
  do:
    - http: {{url: "{target}/wake", json: {{session: "{{{{ session.id }}}}"}}}}
- id: note
  trigger: transcript
  when:
    - keywords: ["take a note"]
  cooldown: 30s
  do:
    - http: {{url: "{target}/note", json: {{session: "{{{{ session.id }}}}"}}}}
"""


def segment(text: str, start: float) -> dict[str, Any]:
    return {
        "text": text,
        "speaker": "SPEAKER_00",
        "speakerId": 0,
        "is_user": True,
        "start": start,
        "end": start + 1.5,
    }


def post_call(server: ServerProcess, session: str, segments: list[dict[str, Any]]) -> str:
    """POST one transcript call; the id of the event it stored (the newest: calls are sent
    one after another)."""
    answer = httpx.post(
        f"{server.url}/webhook/transcript",
        params={"uid": "u1", "session_id": session},
        json=segments,
        timeout=10,
    )
    assert answer.status_code == 200, f"{server.url}: {answer.status_code} {answer.text}"
    [newest] = httpx.get(
        f"{server.url}/api/events",
        params={"trigger": "transcript", "limit": 1},
        headers=ADMIN,
        timeout=5,
    ).json()
    event_id: str = newest["id"]
    return event_id


def settle(servers: list[ServerProcess], target: TargetServer, rules: list[str]) -> None:
    """Wait until every stored action of `rules` was sent and the target saw it: then the
    target's count is final (actions are stored before a webhook is answered)."""

    def done() -> bool:
        planned = sum(len(api_actions(servers[0], rule)) for rule in rules)
        paths = {f"/{rule}" for rule in rules}
        seen = sum(1 for r in list(target.received) if r.path in paths)
        return all(drained(s) for s in servers) and seen >= planned

    wait_until(
        done, timeout=20, interval=0.1, what=lambda: f"the outbox to drain: {outbox(servers[0])}"
    )


def fired_by_call(
    server: ServerProcess, rules: list[str], calls: list[str]
) -> dict[str, list[int]]:
    """For each rule, the numbers (from 1) of the calls whose events planned its actions."""
    return {
        rule: sorted(calls.index(action["event_id"]) + 1 for action in api_actions(server, rule))
        for rule in rules
    }


def test_a_session_alternating_between_receivers_fires_each_rule_once(
    tmp_path: Path, postgres_url: str, target: TargetServer
) -> None:
    write_rules(tmp_path / "rules", TRANSCRIPT_RULES.format(target=target.url))
    with receivers(tmp_path, postgres_url) as (a, b):
        # "turn on the" | "lights" split across A and B fires on B's call only if B knows
        # A's call; the wake word again on B must not fire a once_per_session rule A fired;
        # call 3 sends B's segment to A again (Omi does), which A must know it has heard
        # (else a receiver holding only its own calls fires "lights" a second time)
        lights = segment("lights in the living room.", 1.6)
        calls = [
            post_call(a, "s1", [segment("hey omi please turn on the", 0.0)]),
            post_call(b, "s1", [lights, segment("Hey Omi, the kitchen too.", 3.2)]),
            post_call(a, "s1", [lights, segment("Thanks, that is all.", 4.8)]),
        ]
        settle([a, b], target, ["lights", "wake"])

        assert fired_by_call(a, ["lights", "wake"], calls) == {"lights": [2], "wake": [1]}
        assert requests_to(target, "/lights") == [{"session": "s1"}]
        assert requests_to(target, "/wake") == [{"session": "s1"}]


def test_a_cooldown_holds_across_receivers(
    tmp_path: Path, postgres_url: str, target: TargetServer
) -> None:
    write_rules(tmp_path / "rules", TRANSCRIPT_RULES.format(target=target.url))
    with receivers(tmp_path, postgres_url) as (a, b):
        calls = [
            post_call(a, "s2", [segment("Okay, take a note: buy milk.", 0.0)]),
            post_call(b, "s2", [segment("And take a note: call mum.", 2.0)]),
            post_call(a, "s2", [segment("Also take a note about the car.", 4.0)]),
        ]
        settle([a, b], target, ["note"])

        assert fired_by_call(b, ["note"], calls) == {"note": [1]}
        assert requests_to(target, "/note") == [{"session": "s2"}]


# --- 2. one memory posted to both receivers at once ----------------------------------------


ROUNDS = 5


def post_to_all_at_once(servers: list[ServerProcess], body: bytes) -> list[int | str]:
    """POST one memory body to every receiver at the same moment (a thread each, released
    together); their answers' statuses, or the transport error."""
    start = threading.Barrier(len(servers))
    answers: list[int | str] = ["no answer"] * len(servers)

    def post(index: int) -> None:
        start.wait()
        try:
            response = httpx.post(
                f"{servers[index].url}/webhook/memory?uid=u1",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=10,
            )
        except httpx.TransportError as error:
            answers[index] = repr(error)
        else:
            answers[index] = response.status_code

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_one_memory_posted_to_both_receivers_at_once_acts_once(
    tmp_path: Path, postgres_url: str, target: TargetServer
) -> None:
    write_rules(tmp_path / "rules", http_rule(target.url + "/hook"))
    with receivers(tmp_path, postgres_url) as servers:
        for round_ in range(ROUNDS):
            memory = {"id": f"both-{round_}", "structured": {"title": "t"}, "discarded": False}
            answers = post_to_all_at_once(servers, json.dumps(memory).encode())
            assert answers == [200, 200], f"round {round_}: {answers}"

        target.wait_for(ROUNDS)
        wait_until(lambda: all(drained(s) for s in servers), timeout=20, interval=0.1)
        delivered = sorted(r["event"] for r in requests_to(target, "/hook"))
        assert delivered == [f"both-{n}" for n in range(ROUNDS)]
        assert len(api_actions(servers[0], "to-target")) == ROUNDS


# --- 3. a burst over both receivers, one of them killed -------------------------------------


async def burst(a: ServerProcess, b: ServerProcess, target: TargetServer) -> tuple[set[str], int]:
    """Post BURST memories from SENDERS concurrent clients, alternating A and B; kill B after
    KILL_AFTER_POSTS answers. A post that B fails (refused, or cut by the kill) is sent to A,
    as a load balancer would. Returns the acknowledged memory ids, and how many of them the
    target had seen when B died."""
    acked: set[str] = set()
    answered = 0
    seen_at_kill: list[int] = []
    numbers = iter(range(BURST))
    alive = {a.url: True, b.url: True}
    turn = itertools.cycle([a, b])

    async def post(client: httpx.AsyncClient, server: ServerProcess, memory: bytes) -> int:
        response = await client.post(
            f"{server.url}/webhook/memory?uid=u1",
            content=memory,
            headers={"Content-Type": "application/json"},
        )
        return response.status_code

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal answered
        for n in numbers:
            memory = {"id": f"mem-{n}", "structured": {"title": f"t{n}"}, "discarded": False}
            body = json.dumps(memory).encode()
            server = next(turn)
            if not alive[server.url]:
                server = a
            try:
                status = await post(client, server, body)
            except httpx.TransportError:
                alive[server.url] = False
                status = await post(client, a, body)  # the balancer retries on A
            answered += 1
            if status == 200:
                acked.add(f"mem-{n}")
            if answered == KILL_AFTER_POSTS:
                seen_at_kill.append(len(target.received))
                b.kill()
                alive[b.url] = False

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))
    return acked, seen_at_kill[0]


def test_a_burst_over_two_receivers_with_one_killed_delivers_each_memory_once(
    tmp_path: Path, postgres_url: str
) -> None:
    target = TargetServer(default=Reply(200, "ok", delay=0.02)).start()
    try:
        write_rules(tmp_path / "rules", http_rule(target.url + "/hook"))
        with receivers(tmp_path, postgres_url) as (a, b):
            acked, seen_at_kill = asyncio.run(burst(a, b, target))
            assert b.process is not None and b.process.poll() is not None, "B was not killed"
            assert seen_at_kill < KILL_AFTER_POSTS, "the kill came too late to test anything"

            def keys_by_memory() -> dict[str, set[str | None]]:
                keys: dict[str, set[str | None]] = defaultdict(set)
                for request in list(target.received):
                    keys[request.json()["event"]].add(request.header("Idempotency-Key"))
                return keys

            def all_delivered() -> bool:
                return acked <= keys_by_memory().keys() and drained(a)

            wait_until(
                all_delivered,
                timeout=90,
                interval=0.2,
                what=lambda: (
                    f"{len(acked - keys_by_memory().keys())} acknowledged memories undelivered;"
                    f" outbox {outbox(a)}"
                ),
            )
            health = httpx.get(f"{a.url}/health", timeout=5).json()

        assert acked == {f"mem-{n}" for n in range(BURST)}  # A answered every retried post
        keys = keys_by_memory()
        assert keys.keys() == acked
        several = {memory: sorted(map(str, k)) for memory, k in keys.items() if len(k) != 1}
        assert not several, f"memories sent under several keys: {several}"
        assert None not in set().union(*keys.values()), "a request without an Idempotency-Key"
        all_keys = [next(iter(k)) for k in keys.values()]
        assert len(set(all_keys)) == len(all_keys), "two memories share an Idempotency-Key"
        assert health["actions"] == {"delivered": BURST}, health
    finally:
        target.stop()
