"""The scale-out step of `omi-rules bench`: the receiver section's rules and memories under
wrk, against `omi-rules serve` on SQLite (one process), on PostgreSQL (one receiver) and on
PostgreSQL with two receivers sharing one database.

Each receiver has a folder of its own (its rules, written the same way, and its data/), as on
two machines; the second gets the first's sealing and settings keys, as an operator copies
them. Two receivers are loaded by two wrk processes at once, one per port, each with
half the connections and one thread (the same 32 connections and 2 threads in all as one
receiver gets) and ids of its own; their requests/s are summed, and p50/p99 are the worse of
the two runs (latency distributions cannot be merged from wrk's summary). Every PostgreSQL row
gets a fresh database, created and dropped here, on the server `--postgres URL` names (a URL
that may create databases) or, without it, a throwaway server (engine.pg_server).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from engine.bench_corpus import write_rules
from engine.bench_load import LoadResult, lua_script, parse_wrk, wrk_command
from engine.pg_server import PostgresServer, PostgresUnavailable, create_database, drop_database
from engine.server import sealed, setting_keys
from engine.server.store_postgres import shown_url
from engine.soak import start_serve, stop_server, wait_for_health

WRK_THREADS = 2  # in all, however many receivers


@dataclass
class ScaleRow:
    name: str
    database: str  # "sqlite" or "postgresql"
    receivers: int
    result: LoadResult


@dataclass
class ScaleOut:
    rules: int
    connections: int
    rows: list[ScaleRow] = field(default_factory=list)
    postgres: str = ""  # which server: "throwaway ..." or the --postgres URL, no password
    skipped: str | None = None  # why the PostgreSQL rows are missing

    def row(self, database: str, receivers: int) -> ScaleRow | None:
        for row in self.rows:
            if (row.database, row.receivers) == (database, receivers):
                return row
        return None

    @property
    def ratio(self) -> float | None:
        """Requests/s of two PostgreSQL receivers over one's."""
        one, two = self.row("postgresql", 1), self.row("postgresql", 2)
        if one is None or two is None or one.result.requests_per_s <= 0:
            return None
        return two.result.requests_per_s / one.result.requests_per_s

    def lines(self, cores: int) -> list[str]:
        out = [
            f"scale-out under wrk ({self.rules:,} rules, {self.connections} connections in all,"
            " memories with new ids):"
        ]
        for row in self.rows:
            r = row.result
            out.append(
                f"  {row.name:<24} {r.requests_per_s:9.0f} req/s  p50 {r.p50_ms:7.2f} ms"
                f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
            )
        if self.skipped:
            out.append(f"  PostgreSQL SKIPPED: {self.skipped}")
            return out
        out.append(f"  PostgreSQL: {self.postgres}")
        out.append("  two receivers: two wrk at once, req/s summed, p50/p99 the worse of the two")
        if self.ratio is not None:
            out.append(
                f"  2 receivers / 1 receiver (PostgreSQL): {self.ratio:.2f}x the requests/s"
                f" (wrk, the receivers and PostgreSQL share {cores} core(s))"
            )
        return out

    def json_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            "connections": self.connections,
            "postgres": self.postgres,
            "skipped": self.skipped,
            "rows": [
                {
                    "name": row.name,
                    "database": row.database,
                    "receivers": row.receivers,
                    "requests_per_s": row.result.requests_per_s,
                    "p50_ms": row.result.p50_ms,
                    "p99_ms": row.result.p99_ms,
                    "errors": row.result.errors,
                }
                for row in self.rows
            ],
            "ratio_2_to_1": self.ratio,
        }


def combined(results: list[LoadResult]) -> LoadResult:
    """wrk runs made at once, as one: requests/s summed, the worse latencies, errors summed."""
    return LoadResult(
        sum(r.requests_per_s for r in results),
        max(r.p50_ms for r in results),
        max(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def load_receivers(
    rules: int, seconds: float, connections: int, db: str, receivers: int
) -> LoadResult:
    """`receivers` processes of `omi-rules serve` on one database `db` (a file name inside the
    one folder when a single receiver, else a postgresql:// URL), each with `rules` generated
    rules, under wrk at once."""
    root = Path(tempfile.mkdtemp(prefix="omi-rules-bench-scale-"))
    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    try:
        urls = []
        for n in range(receivers):
            folder = root / f"receiver-{n}"
            write_rules(folder / "rules", rules)
            (folder / "wrk.lua").write_text(lua_script(prefix=f"r{n}w"))
            if n:  # the first receiver's keys, as README "Scaling out" has the operator copy
                _copy_keys(root / "receiver-0" / "data", folder / "data")
            server, url, log = start_serve(folder, db)
            started.append((server, log))
            wait_for_health(url, server)  # one after another: the first makes the schema
            urls.append(url)
        runs = [
            subprocess.Popen(
                wrk_command(
                    f"{url}/webhook/memory?uid=bench",
                    seconds,
                    connections // receivers,
                    root / f"receiver-{n}" / "wrk.lua",
                    threads=max(1, WRK_THREADS // receivers),
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n, url in enumerate(urls)
        ]
        results = []
        for run in runs:
            out, err = run.communicate()
            if run.returncode != 0:
                raise RuntimeError(f"wrk exited {run.returncode}:\n{out}{err}")
            results.append(parse_wrk(out))
        return combined(results)
    finally:
        for server, log in started:
            stop_server(server)
            log.close()
        shutil.rmtree(root, ignore_errors=True)


def _copy_keys(source: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for name in (sealed.KEY_FILE, setting_keys.KEY_FILE):
        shutil.copy2(source / name, destination / name)


@contextmanager
def postgres_server_url(given: str | None) -> Iterator[tuple[str, str]]:
    """(URL that may create databases, how to name it): `given`, or a throwaway server's."""
    if given:
        yield given, shown_url(given)
        return
    try:
        server = PostgresServer.start()
    except RuntimeError as error:  # installed, but it did not start: said, not raised
        raise PostgresUnavailable(str(error)) from error
    try:
        yield server.url, "throwaway server (engine.pg_server: initdb, loopback, fsync off)"
    finally:
        server.stop()


def _server_version(url: str) -> str:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def run_scale_out(
    rules: int,
    seconds: float,
    connections: int,
    postgres: str | None = None,
    *,
    progress: Callable[[str], None] = lambda line: None,
) -> ScaleOut:
    """The three rows; without PostgreSQL (not installed, not reachable) the SQLite row alone
    and `skipped` saying why."""
    report = ScaleOut(rules, connections)
    progress(f"scale-out: wrk against omi-rules serve on SQLite for {seconds:g} s ...")
    result = load_receivers(rules, seconds, connections, "omi.db", 1)
    report.rows.append(ScaleRow("SQLite, 1 receiver", "sqlite", 1, result))
    try:
        with postgres_server_url(postgres) as (server_url, name):
            report.postgres = f"{name}, PostgreSQL {_server_version(server_url)}"
            for receivers in (1, 2):
                progress(
                    f"scale-out: wrk against {receivers} omi-rules serve on PostgreSQL"
                    f" for {seconds:g} s ..."
                )
                database = f"omi_bench_{secrets.token_hex(4)}"
                url = create_database(server_url, database)
                try:
                    result = load_receivers(rules, seconds, connections, url, receivers)
                finally:
                    drop_database(server_url, database)
                plural = "receiver" if receivers == 1 else "receivers"
                report.rows.append(
                    ScaleRow(f"PostgreSQL, {receivers} {plural}", "postgresql", receivers, result)
                )
    except (PostgresUnavailable, psycopg.Error) as error:
        report.skipped = " ".join(str(error).split())[:400] or repr(error)
    return report
