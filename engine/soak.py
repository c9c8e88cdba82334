"""The soak: mixed Omi traffic at half the measured capacity for a fixed time, against a
real `omi-rules serve` process and a loopback target, then the books are checked.

    probe   post memories as fast as 16 connections allow for a few seconds: capacity
    soak    memories, transcript calls, day summaries and audio chunks at half that rate
    check   every answer 200; every acknowledged event in history; every action delivered
            (the target saw each idempotency key once); the server's memory flat (its RSS
            in the last half of the run grows less than `max_growth_mb`)

`omi-rules bench --soak` runs the long form; the test suite runs a short one.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx

from engine.server.statuses import UNFINISHED, ActionStatus

ADMIN_TOKEN = "soak-admin-token"
RULES = """
- id: memories-to-target
  trigger: memory
  do:
    - http: {{url: "{target}/memory", json: {{title: "{{{{ memory.structured.title }}}}"}}}}
    - log: {{path: soak.jsonl, message: "{{{{ memory.id }}}}"}}
- id: voice-to-target
  trigger: transcript
  when:
    - keywords: ["turn on the lights"]
  do:
    - http: {{url: "{target}/voice", json: {{said: "{{{{ match.text }}}}"}}}}
- id: summary-to-target
  trigger: day_summary
  do:
    - http: {{url: "{target}/summary", json: {{headline: "{{{{ summary.headline }}}}"}}}}
- id: loud-audio
  trigger: audio
  when:
    - path: $.silent
      equals: false
  do:
    - log: {{path: audio.jsonl, message: "{{{{ audio.duration }}}}"}}
"""


@dataclass
class SoakReport:
    capacity: float = 0.0  # memories/s the probe reached
    rate: float = 0.0  # requests/s the soak aimed at
    seconds: float = 0.0
    sent: int = 0
    acknowledged: int = 0
    errors: list[str] = field(default_factory=list)
    missing_events: int = 0
    expected_deliveries: int = 0
    delivered: int = 0
    duplicated: int = 0
    rss_mb: list[float] = field(default_factory=list)  # sampled through the run

    @property
    def late_growth_mb(self) -> float:
        """RSS growth over the second half of the run (warm-up excluded)."""
        half = self.rss_mb[len(self.rss_mb) // 2 :]
        return max(half) - half[0] if half else 0.0

    def lines(self) -> list[str]:
        return [
            f"capacity probe: {self.capacity:.0f} memories/s on {os.cpu_count()} core(s)",
            f"soak: {self.sent} requests in {self.seconds:.1f} s at {self.rate:.0f}/s target",
            f"acknowledged: {self.acknowledged}, errors: {len(self.errors)}",
            f"missing from history: {self.missing_events}",
            f"deliveries: {self.delivered} of {self.expected_deliveries}, "
            f"sent twice: {self.duplicated}",
            f"server RSS: {self.rss_mb[0]:.1f} -> {self.rss_mb[-1]:.1f} MB "
            f"(max {max(self.rss_mb):.1f}; last-half growth {self.late_growth_mb:.1f} MB)"
            if self.rss_mb
            else "server RSS: not sampled",
        ]

    def problems(self, max_growth_mb: float) -> list[str]:
        found = list(self.errors[:5])
        if self.missing_events:
            found.append(f"{self.missing_events} acknowledged event(s) not in history")
        if self.delivered < self.expected_deliveries:
            found.append(f"{self.expected_deliveries - self.delivered} action(s) undelivered")
        if self.duplicated:
            found.append(f"{self.duplicated} action(s) delivered twice")
        if self.late_growth_mb > max_growth_mb:
            found.append(f"memory grew {self.late_growth_mb:.1f} MB in the last half")
        return found


class _Target:
    """A loopback HTTP target counting requests by idempotency key."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                with target.lock:
                    target.keys[key] = target.keys.get(key, 0) + 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _requests(n: int, run: str) -> tuple[str, bytes, str, int]:
    """The n-th request of a mixed stream: (endpoint and query, body, content type, actions)."""
    kind = n % 10
    if kind < 5:  # half of Omi's traffic here: finished conversations
        body = {
            "id": f"{run}-m{n}",
            "structured": {"title": f"Meeting {n}", "category": "work", "action_items": []},
            "transcript_segments": [{"text": "We planned the launch.", "is_user": True}],
        }
        return "memory?uid=soak", json.dumps(body).encode(), "application/json", 2
    if kind < 8:  # live transcript calls: every other one says the command
        said = "please turn on the lights" if kind == 6 else "just talking"
        segments = [{"text": said, "is_user": True, "start": n, "end": n + 1}]
        query = f"transcript?uid=soak&session_id={run}-s{n // 50}"
        return query, json.dumps(segments).encode(), "application/json", int(kind == 6)
    if kind == 8:
        body = {"summary_json": {"id": f"{run}-d{n}", "headline": f"Day {n}", "overview": "ok"}}
        return "day-summary?uid=soak", json.dumps(body).encode(), "application/json", 1
    chunk = (b"\x00\x10\x00\xf0" * 2000) if n % 20 == 9 else bytes(8000)
    return (
        "audio?uid=soak&sample_rate=8000",
        chunk,
        "application/octet-stream",
        int(n % 20 == 9),
    )


async def _post_stream(
    url: str,
    count: int,
    rate: float | None,
    run: str,
    report: SoakReport,
    concurrency: int = 16,
    memories_only: bool = False,
) -> int:
    """Post `count` requests (at `rate` per second, or as fast as possible); returns the
    actions the acknowledged ones should deliver."""
    expected = 0
    limit = asyncio.Semaphore(concurrency)
    start = time.monotonic()

    async def one(client: httpx.AsyncClient, n: int) -> None:
        nonlocal expected
        query, body, kind, actions = _requests(n * 10 if memories_only else n, run)
        async with limit:
            try:
                answer = await client.post(
                    f"{url}/webhook/{query}", content=body, headers={"Content-Type": kind}
                )
            except httpx.HTTPError as exc:
                report.errors.append(f"{query}: {type(exc).__name__}")
                return
        report.sent += 1
        if answer.status_code == 200:
            report.acknowledged += 1
            expected += actions
        else:
            report.errors.append(f"{query}: HTTP {answer.status_code} {answer.text[:100]}")

    async with httpx.AsyncClient(timeout=15) as client:
        tasks = []
        for n in range(count):
            if rate:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, n)))
        await asyncio.gather(*tasks)
    return expected


def run_soak(
    seconds: float = 60.0,
    *,
    probe_seconds: float = 3.0,
    progress: Callable[[str], None] = lambda line: None,
) -> SoakReport:
    """Probe capacity, soak at half of it for `seconds`, then check the books."""
    report = SoakReport()
    folder = Path(tempfile.mkdtemp(prefix="omi-rules-soak-"))
    target = _Target()
    (folder / "rules").mkdir()
    (folder / "rules" / "soak.yaml").write_text(RULES.format(target=target.url))
    server, url, log = start_serve(folder)
    try:
        wait_for_health(url, server)
        progress(f"probing capacity for {probe_seconds:g} s ...")
        probe = SoakReport()
        began = time.monotonic()
        asyncio.run(_probe(url, probe_seconds, probe))
        report.capacity = probe.acknowledged / (time.monotonic() - began)
        report.rate = max(1.0, report.capacity / 2)
        count = int(report.rate * seconds)
        progress(f"soaking: {count} requests at {report.rate:.0f}/s for {seconds:g} s ...")
        sampling = _Sampler(server.pid)
        began = time.monotonic()
        expected = asyncio.run(_post_stream(url, count, report.rate, "soak", report))
        report.seconds = time.monotonic() - began
        progress("waiting for the outbox to drain, then checking the books ...")
        report.expected_deliveries = expected + 2 * probe.acknowledged
        _drain(url)
        report.rss_mb = sampling.stop()
        stop_server(server)
        _check_books(folder / "omi.db", target, report, report.acknowledged + probe.acknowledged)
    finally:
        stop_server(server)
        log.close()
        target.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return report


def start_serve(
    folder: Path, db: str = "omi.db", log_name: str = "serve.log"
) -> tuple[subprocess.Popen[bytes], str, IO[bytes]]:
    """`omi-rules serve` on a free loopback port over `folder`/rules, its database (`db`: a
    file in `folder` or a postgresql:// URL) and log (`log_name`) in `folder`: (process, url,
    open log to close after stopping)."""
    port = free_port()
    env = {
        **os.environ,
        "OMI_RULES_ADMIN_TOKEN": ADMIN_TOKEN,
        "OMI_RULES_WATCH_RULES": "false",
        "OMI_RULES_POLL_INTERVAL": "0.05",
        "OMI_RULES_DB": db,  # not on the command line: a URL's password would show in ps
    }
    command = [sys.executable, "-m", "engine.cli", "serve", "--rules", "rules"]
    log = (folder / log_name).open("wb")
    server = subprocess.Popen(
        [*command, "--port", str(port)], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return server, f"http://127.0.0.1:{port}", log


def stop_server(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _probe(url: str, seconds: float, report: SoakReport) -> None:
    deadline = time.monotonic() + seconds
    batch = 0
    while time.monotonic() < deadline:
        await _post_stream(url, 64, None, f"probe{batch}", report, memories_only=True)
        batch += 1


class _Sampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mb(self.pid))
            self._stop.wait(0.25)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.samples


def wait_for_health(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("omi-rules serve exited before it answered /health")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("omi-rules serve did not answer /health within 30 s")


def _drain(url: str, timeout: float = 60.0) -> None:
    """Wait until the outbox holds nothing pending or in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        actions = httpx.get(f"{url}/health", timeout=5).json().get("actions", {})
        if not any(actions.get(status) for status in UNFINISHED):
            return
        time.sleep(0.2)


def _check_books(db: Path, target: _Target, report: SoakReport, acknowledged: int) -> None:
    """Compare what was acknowledged with what the database and the target hold."""
    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM actions GROUP BY status"))
        http_actions = conn.execute(
            "SELECT COUNT(*) FROM actions WHERE connector = 'http' AND status = ?",
            (ActionStatus.DELIVERED,),
        ).fetchone()[0]
    report.missing_events = max(0, acknowledged - events)
    report.delivered = statuses.get(ActionStatus.DELIVERED, 0)
    with target.lock:
        keys = dict(target.keys)
    report.duplicated = sum(1 for n in keys.values() if n > 1)
    if len(keys) != http_actions:
        report.errors.append(f"target saw {len(keys)} actions, history says {http_actions}")
    undelivered = {k: v for k, v in statuses.items() if k != ActionStatus.DELIVERED}
    if undelivered:
        report.errors.append(f"actions not delivered: {undelivered}")
