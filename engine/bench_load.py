"""The receiver's load step of `omi-rules bench`: `wrk` posts memories, each with a new id,
to a real `omi-rules serve` holding N rules and to the bare Litestar endpoint
(engine.bench_bare) on the same machine, with the same connections and duration."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine.bench_corpus import TOPICS, memory_body, write_rules
from engine.soak import free_port, start_serve, stop_server, wait_for_health

# Each wrk thread has its own Lua state: `tid` (set in setup) keeps the ids apart; the
# prefix keeps apart the ids of wrk processes run at once (engine.bench_scale).
_SCRIPT = """
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local n = 0
local template = [==[%s]==]
function request()
  n = n + 1
  local body = string.gsub(template, "BENCH_ID", "%s" .. tid .. "-" .. n)
  body = string.gsub(body, "BENCH_TOPIC", tostring(n %% %d))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors


def wrk_missing() -> str | None:
    """Why the load step cannot run, or None."""
    if shutil.which("wrk") is None:
        return "wrk is not installed (apt-get install wrk); receiver figures skipped"
    return None


def lua_script(prefix: str = "w") -> str:
    """wrk's request script: memory_body's memory, each request with a new id `prefix`..."""
    body = memory_body(0).decode()
    body = body.replace('"bench-m0"', '"BENCH_ID"').replace('topic-0"', 'topic-BENCH_TOPIC"')
    return _SCRIPT % (body, prefix, TOPICS)


def _latency_ms(text: str, percentile: str) -> float:
    found = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not found:
        raise RuntimeError(f"wrk printed no {percentile}% latency:\n{text}")
    return float(found[1]) * _UNITS[found[2]]


def parse_wrk(text: str) -> LoadResult:
    """The figures from `wrk --latency` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rate:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{text}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    socket_errors = re.search(r"Socket errors: (.*)", text)
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors[1]))
    return LoadResult(float(rate[1]), _latency_ms(text, "50"), _latency_ms(text, "99"), errors)


def wrk_command(
    url: str, seconds: float, connections: int, script: Path, threads: int = 2
) -> list[str]:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    return [*command, "-s", str(script), url]


def run_wrk(url: str, seconds: float, connections: int, script: Path) -> LoadResult:
    done = subprocess.run(
        wrk_command(url, seconds, connections, script), capture_output=True, text=True, check=True
    )
    return parse_wrk(done.stdout)


def load_receiver(rules: int, seconds: float, connections: int) -> LoadResult:
    """`omi-rules serve` with `rules` generated rules under wrk."""
    folder = Path(tempfile.mkdtemp(prefix="omi-rules-bench-"))
    try:
        write_rules(folder / "rules", rules)
        (folder / "wrk.lua").write_text(lua_script())
        server, url, log = start_serve(folder)
        try:
            wait_for_health(url, server)
            return run_wrk(
                f"{url}/webhook/memory?uid=bench", seconds, connections, folder / "wrk.lua"
            )
        finally:
            stop_server(server)
            log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_bare(seconds: float, connections: int) -> LoadResult:
    """The bare Litestar endpoint under the same wrk."""
    folder = Path(tempfile.mkdtemp(prefix="omi-rules-bench-bare-"))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "engine.bench_bare:app", "--port", str(port)]
    try:
        (folder / "wrk.lua").write_text(lua_script())
        server = subprocess.Popen(
            [*command, "--no-access-log", "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for_port(url, server)
            return run_wrk(f"{url}/webhook/memory", seconds, connections, folder / "wrk.lua")
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_port(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the bare endpoint exited before it answered")
        try:
            httpx.post(f"{url}/webhook/memory", content=b"{}", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the bare endpoint did not answer within 30 s")
