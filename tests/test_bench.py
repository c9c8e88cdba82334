"""`omi-rules bench --quick`: every figure present and positive, every section printed; the
generated rule mix and the decision bytes checked exactly. No timing assertions."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from engine.bench import QUICK_SIZES, decision_bytes, run_bench, unfired_bytes
from engine.bench_corpus import RULE_KINDS, memory_body, write_rules
from engine.bench_load import LoadResult, lua_script, parse_wrk, run_wrk, wrk_missing
from engine.bench_scale import combined, load_receivers, run_scale_out
from engine.cli import main
from engine.pg_server import PostgresUnavailable, find_pg_bin
from engine.rules.loader import load_rules
from engine.runtime.payloads import decode_event
from engine.runtime.pipeline import Pipeline
from engine.secrets import Secrets
from engine.server.store_postgres import shown_url
from engine.soak import start_serve, stop_server, wait_for_health
from tests.helpers import NOW
from tests.postgres import PostgresServer

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"  # port 1: nothing listens

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:8000/webhook/memory?uid=bench
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.60ms    1.20ms  20.00ms   90.00%
  Latency Distribution
     50%  850.00us
     75%    6.00ms
     90%    7.00ms
     99%    1.25s
  5302 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   5302.50
Transfer/sec:      1.00MB
"""


def test_the_rule_mix_is_every_kind_in_turn(tmp_path: Path) -> None:
    mix = write_rules(tmp_path, 2 * len(RULE_KINDS) + 1)
    assert mix == Counter({kind: 2 for kind in RULE_KINDS}) + Counter({"equals": 1})
    ruleset = load_rules(tmp_path)
    assert ruleset.errors == []
    assert len(ruleset.rules) == 15


def test_payload_0_matches_the_rules_of_topic_0_and_skips_the_others(tmp_path: Path) -> None:
    write_rules(tmp_path, len(RULE_KINDS) * 2)
    pipeline = Pipeline(load_rules(tmp_path), Secrets(), dry_run=True)
    event = decode_event("memory", memory_body(0), uid="bench", session_id="")
    outcome = pipeline.process(event, now=NOW)
    # rule 0 (equals topic-0), and fuzzy rule 3, whose command the payload says with one
    # letter misheard; fuzzy rule 10 listens for another command
    assert [d.rule.id for d in outcome.matched] == ["bench-0", "bench-3"]
    assert len(outcome.skipped) == 12


def test_decision_bytes_are_the_stored_json_length(tmp_path: Path) -> None:
    write_rules(tmp_path, 1)
    pipeline = Pipeline(load_rules(tmp_path), Secrets(), dry_run=True)
    matched = pipeline.process(decode_event("memory", memory_body(0), uid="u"), now=NOW)
    skipped = pipeline.process(decode_event("memory", memory_body(1), uid="u"), now=NOW)
    assert decision_bytes(matched) == len('[{"rule":"bench-0","matched":true,"reason":""}]')
    # a rule that failed a condition is explained when read (engine.server.why_not)
    assert decision_bytes(skipped) == len("[]")
    assert unfired_bytes(matched) == unfired_bytes(skipped) == 0


def test_wrk_output_is_parsed_with_units_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests_per_s, result.p50_ms, result.p99_ms) == (5302.5, 0.85, 1250.0)
    assert result.errors == 7


def test_quick_bench_prints_every_figure() -> None:
    report = run_bench(quick=True)
    assert report.sizes == QUICK_SIZES
    for n in QUICK_SIZES:
        assert report.matching[n].median_us > 0
        assert report.matching[n].p99_us >= report.matching[n].median_us
        assert report.decision_bytes[n] > 0
    assert report.naive is not None and report.naive.median_us > 0
    assert report.peak_rss_mb > 0
    text = report.text()
    for section in (
        "core(s)",
        "matching per event",
        "naive per event",
        "receiver under wrk",
        "scale-out under wrk",
        "decision bytes stored per event",
        "peak memory",
        "targets:",
    ):
        assert section in text
    assert text.count("PASS") + text.count("FAIL") + text.count("n/a") == 4
    missing = wrk_missing()
    if missing:
        print(f"\n*** {missing} ***")
        assert f"SKIPPED: {missing}" in text
    else:
        assert report.receiver is not None and report.bare is not None
        assert report.receiver.requests_per_s > 0 and report.bare.requests_per_s > 0
        assert report.receiver.p99_ms > 0 and report.bare.p50_ms > 0
        assert report.receiver.errors == 0 and report.bare.errors == 0
        assert report.receiver_empty is not None and report.receiver_empty.errors == 0
        assert "with no rules (the request path alone)" in report.text()
        scale = report.scale_out
        assert scale is not None and scale.rules == QUICK_SIZES[1]
        try:
            find_pg_bin()
        except PostgresUnavailable as error:  # the section says so; the bench goes on
            assert scale.skipped == str(error)
            assert f"PostgreSQL SKIPPED: {error}" in text
        else:  # a throwaway server, started and stopped by the bench
            assert scale.skipped is None, scale.skipped
            assert [row.name for row in scale.rows] == [
                "SQLite, 1 receiver",
                "PostgreSQL, 1 receiver",
                "PostgreSQL, 2 receivers",
            ]
            assert scale.ratio is not None and scale.ratio > 0
            assert "2 receivers / 1 receiver (PostgreSQL)" in text
        for row in scale.rows:
            assert row.result.requests_per_s > 0 and row.result.p99_ms > 0
            assert f"{row.name:<24} {row.result.requests_per_s:9.0f} req/s" in text
    figures = json.loads(json.dumps(report.json_dict()))
    assert figures["sizes"] == list(QUICK_SIZES)
    assert figures["rule_mix"][str(QUICK_SIZES[2])] == dict(report.rule_mix[QUICK_SIZES[2]])
    assert len(figures["targets"]) == 4
    if report.scale_out:
        assert figures["scale_out"] == report.scale_out.json_dict()


def test_the_cli_runs_the_quick_bench_as_json() -> None:
    # a --postgres server that does not answer: the scale-out section says so, no crash
    result = CliRunner().invoke(main, ["bench", "--quick", "--json", "--postgres", UNREACHABLE])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["matching"][str(QUICK_SIZES[0])]["median_us"] > 0
    if wrk_missing():
        assert figures["scale_out"] is None and figures["load_skipped"] == wrk_missing()
        return
    scale = figures["scale_out"]
    assert "127.0.0.1" in scale["skipped"] and "port 1" in scale["skipped"]
    assert [row["name"] for row in scale["rows"]] == ["SQLite, 1 receiver"]
    assert scale["rows"][0]["requests_per_s"] > 0 and scale["ratio_2_to_1"] is None


def test_combined_wrk_runs_sum_rates_and_keep_the_worse_latencies() -> None:
    runs = [LoadResult(100.5, 2.0, 30.0, 1), LoadResult(200.0, 3.0, 20.0, 2)]
    assert combined(runs) == LoadResult(300.5, 3.0, 30.0, 3)


def test_two_receivers_share_one_postgresql_database(postgres_url: str) -> None:
    if wrk_missing():
        pytest.skip(wrk_missing() or "")
    result = load_receivers(10, 1, 8, postgres_url, 2)
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT dedupe_key, status, body FROM events").fetchall()
    keys = [key for key, _, _ in rows]
    assert result.requests_per_s > 0 and result.p99_ms > 0
    assert len(rows) > 10
    assert len(set(keys)) == len(keys)  # each wrk's ids its own: no request was a repeat
    for receiver in ("r0w", "r1w"):  # both receivers wrote into the one database
        assert any(f'"id": "{receiver}'.encode() in bytes(body) for _, _, body in rows)
    assert {status for _, status, _ in rows} == {"processed"}


def test_scale_out_rows_on_a_given_server(postgres_server: PostgresServer) -> None:
    if wrk_missing():
        pytest.skip(wrk_missing() or "")
    before = _databases(postgres_server.url)
    scale = run_scale_out(QUICK_SIZES[1], 1, 16, postgres_server.url)
    assert scale.skipped is None, scale.skipped
    assert scale.postgres.startswith(f"{shown_url(postgres_server.url)}, PostgreSQL ")
    assert postgres_server.password not in scale.postgres  # never printed
    assert [(row.database, row.receivers) for row in scale.rows] == [
        ("sqlite", 1),
        ("postgresql", 1),
        ("postgresql", 2),
    ]
    for row in scale.rows:
        assert row.result.requests_per_s > 0 and row.result.p99_ms > 0
    assert scale.ratio is not None and scale.ratio > 0
    assert _databases(postgres_server.url) == before  # its databases dropped


def _databases(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_every_wrk_request_is_a_new_memory(tmp_path: Path) -> None:
    if wrk_missing():
        pytest.skip(wrk_missing() or "")
    write_rules(tmp_path / "rules", 10)
    (tmp_path / "wrk.lua").write_text(lua_script())
    server, url, log = start_serve(tmp_path)
    try:
        wait_for_health(url, server)
        result = run_wrk(f"{url}/webhook/memory?uid=bench", 1, 8, tmp_path / "wrk.lua")
    finally:
        stop_server(server)
        log.close()
    with sqlite3.connect(tmp_path / "omi.db") as conn:
        rows = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT dedupe_key), MIN(status), MAX(status) FROM events"
        ).fetchone()
    assert result.errors == 0
    assert rows[0] > 10
    assert rows[1] == rows[0]  # no duplicates
    assert (rows[2], rows[3]) == ("processed", "processed")
