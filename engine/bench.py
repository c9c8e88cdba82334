"""`omi-rules bench`: what one event costs as the rule set grows, in one run.

    matching    Pipeline.process (dry-run, the real loader and matcher) per event, median
                and p99, at three rule counts (10, 1,000, 10,000; --quick: smaller)
    naive       every rule's JSONPaths walked by jsonpath-ng for every event, at the middle
                count: how much the compiled matcher saves
    receiver    wrk against `omi-rules serve` with the middle count of rules, with none
                (the request path alone), and against a bare Litestar endpoint
                (engine.bench_bare): req/s, p50, p99 (skipped, and said so, when wrk is not
                installed)
    scale-out   the receiver's wrk load against `omi-rules serve` on SQLite, on PostgreSQL,
                and two receivers on one PostgreSQL database (engine.bench_scale): req/s,
                p99, and the ratio of two receivers to one (PostgreSQL from --postgres URL
                or a throwaway server; without it, said so)
    decisions   bytes of decisions stored per event (the events table's `decisions` column)
    memory      peak RSS of this process and of its children (the servers, wrk)

Targets are printed beside the figures, PASS or FAIL; they do not change the exit status.
The generated rules and payloads are in engine.bench_corpus.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from jsonpath_ng.ext.parser import parse as parse_extended

from engine.bench_corpus import memory_body, memory_payload, rule_paths, write_rules
from engine.bench_load import LoadResult, load_bare, load_receiver, wrk_missing
from engine.bench_scale import ScaleOut, run_scale_out
from engine.rules.loader import load_rules
from engine.runtime.payloads import decode_event
from engine.runtime.pipeline import Outcome, Pipeline
from engine.secrets import Secrets
from engine.server.why_not import stored_decisions

FULL_SIZES = (10, 1_000, 10_000)
QUICK_SIZES = (10, 50, 200)
CONNECTIONS = 32


@dataclass
class Timing:
    median_us: float
    p99_us: float
    events: int


@dataclass
class BenchReport:
    sizes: tuple[int, ...]
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    rule_mix: dict[int, Counter[str]] = field(default_factory=dict)
    matching: dict[int, Timing] = field(default_factory=dict)
    naive: Timing | None = None
    decision_bytes: dict[int, float] = field(default_factory=dict)
    unfired_bytes: dict[int, float] = field(default_factory=dict)  # of rules that did not fire
    receiver: LoadResult | None = None
    receiver_empty: LoadResult | None = None  # no rules: what the request path itself costs
    bare: LoadResult | None = None
    load_skipped: str | None = None
    scale_out: ScaleOut | None = None  # None when wrk is missing (load_skipped says)
    peak_rss_mb: float = 0.0
    children_peak_rss_mb: float = 0.0
    seconds: float = 0.0

    @property
    def middle(self) -> int:
        return self.sizes[1]

    def targets(self) -> list[tuple[str, bool | None]]:
        """(target, met); met is None when its figures are missing."""
        small, middle, large = self.sizes
        found: list[tuple[str, bool | None]] = []
        if self.receiver and self.bare:
            kept = self.receiver.requests_per_s / self.bare.requests_per_s
            found.append(
                (
                    f"receiver with {middle:,} rules keeps >= 80% of bare req/s at "
                    f"{CONNECTIONS} connections with p99 < 50 ms",
                    kept >= 0.8 and self.receiver.p99_ms < 50,
                )
            )
        else:
            found.append(("receiver keeps >= 80% of bare req/s, p99 < 50 ms", None))
        ratio = self.matching[large].median_us / self.matching[small].median_us
        found.append((f"matching at {large:,} rules within 3x of {small:,} rules", ratio <= 3))
        if self.naive:
            speedup = self.naive.median_us / self.matching[middle].median_us
            found.append((f">= 20x faster than naive at {middle:,} rules", speedup >= 20))
        # what fired is stored whatever the count (more rules, more fire); the target is
        # that nothing else grows with the rules
        sizes = [self.unfired_bytes[n] for n in self.sizes]
        found.append(
            (
                "decision bytes per event independent of rule count (beyond the rules that fired)",
                max(sizes) == min(sizes),
            )
        )
        return found

    def lines(self) -> list[str]:
        small, middle, large = self.sizes
        out = [f"omi-rules bench on {self.cores} core(s), {self.seconds:.0f} s", ""]
        out.append(
            "rule mix: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rule_mix[large].items()))
        )
        out.append("")
        out.append("matching per event (Pipeline.process, dry-run):")
        for n in self.sizes:
            t = self.matching[n]
            out.append(
                f"  {n:>6,} rules: median {t.median_us:9.1f} us  p99 {t.p99_us:9.1f} us"
                f"  ({t.events} events)"
            )
        if self.naive:
            speedup = self.naive.median_us / self.matching[middle].median_us
            out.append(
                f"naive per event at {middle:,} rules (jsonpath-ng, every rule's paths): "
                f"median {self.naive.median_us:.1f} us  p99 {self.naive.p99_us:.1f} us; "
                f"compiled is {speedup:.1f}x faster"
            )
        out.append("")
        out.append(f"receiver under wrk ({CONNECTIONS} connections, memories with new ids):")
        if self.receiver and self.bare:
            rows = [(f"omi-rules, {middle:,} rules", self.receiver)]
            if self.receiver_empty:
                rows.append(("omi-rules, no rules", self.receiver_empty))
            for name, r in (*rows, ("bare Litestar", self.bare)):
                out.append(
                    f"  {name:<22} {r.requests_per_s:9.0f} req/s  p50 {r.p50_ms:7.2f} ms"
                    f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
                )
            kept = self.receiver.requests_per_s / self.bare.requests_per_s
            out.append(f"  receiver/bare: {kept:.0%} of the requests/s")
            if self.receiver_empty:
                path = self.receiver_empty.requests_per_s / self.bare.requests_per_s
                out.append(f"  with no rules (the request path alone): {path:.0%}")
        else:
            out.append(f"  SKIPPED: {self.load_skipped}")
        out.append("")
        if self.scale_out:
            out.extend(self.scale_out.lines(self.cores))
        else:
            out.append("scale-out under wrk:")
            out.append(f"  SKIPPED: {self.load_skipped}")
        out.append("")
        out.append("decision bytes stored per event:")
        for n in self.sizes:
            out.append(
                f"  {n:>6,} rules: {self.decision_bytes[n]:,.0f} bytes "
                f"({self.unfired_bytes[n]:,.0f} for rules that did not fire)"
            )
        out.append("")
        out.append(
            f"peak memory: bench process {self.peak_rss_mb:.0f} MB, "
            f"largest child (server, wrk) {self.children_peak_rss_mb:.0f} MB"
        )
        out.append("")
        out.append("targets:")
        for target, met in self.targets():
            verdict = "n/a " if met is None else ("PASS" if met else "FAIL")
            out.append(f"  {verdict}  {target}")
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def json_dict(self) -> dict[str, Any]:
        """Every figure, for `omi-rules bench --json`."""
        found = asdict(self)
        found["rule_mix"] = {n: dict(mix) for n, mix in self.rule_mix.items()}  # not Counter()
        found["scale_out"] = self.scale_out.json_dict() if self.scale_out else None
        found["targets"] = [{"target": t, "met": met} for t, met in self.targets()]
        return found


def decision_bytes(outcome: Outcome) -> int:
    """What the events table stores for one outcome's decisions, in bytes."""
    return len(stored_decisions(outcome).encode())


def unfired_bytes(outcome: Outcome) -> int:
    """The part of decision_bytes that is not about rules that fired."""
    fired = msgspec.json.encode(
        [{"rule": d.rule.id, "matched": True, "reason": d.reason} for d in outcome.matched]
    )
    return decision_bytes(outcome) - len(fired)


def _timing(samples_ns: list[int]) -> Timing:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Timing(statistics.median(ordered) / 1000, p99 / 1000, len(ordered))


def _time_events(run: Callable[[int], Any], budget_s: float, least: int, most: int) -> list[int]:
    """Run event 0, 1, ... until `budget_s` has passed (at least `least`, at most `most`)."""
    for n in range(3):  # warm-up: caches, first-use imports
        run(-1 - n)
    samples: list[int] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < most and (len(samples) < least or time.perf_counter() < deadline):
        began = time.perf_counter_ns()
        run(len(samples))
        samples.append(time.perf_counter_ns() - began)
    return samples


def time_matching(
    folder: Path, count: int, budget_s: float, least: int
) -> tuple[Timing, float, float, Counter[str]]:
    """Median/p99 of Pipeline.process over `count` generated rules; decision bytes per event
    (all, and those not about fired rules)."""
    mix = write_rules(folder, count)
    ruleset = load_rules(folder)
    if ruleset.errors:
        raise RuntimeError(f"generated rules did not load: {ruleset.errors[0]}")
    pipeline = Pipeline(ruleset, Secrets(), dry_run=True)
    stored: list[int] = []
    unfired: list[int] = []

    def run(n: int) -> None:
        event = decode_event("memory", memory_body(n), uid="bench", session_id="")
        began = time.perf_counter_ns()
        outcome = pipeline.process(event)
        spent.append(time.perf_counter_ns() - began)
        stored.append(decision_bytes(outcome))
        unfired.append(unfired_bytes(outcome))

    spent: list[int] = []
    _time_events(run, budget_s, least, 5_000)
    return _timing(spent[3:]), statistics.mean(stored), statistics.mean(unfired), mix


def time_naive(count: int, budget_s: float, least: int) -> Timing:
    """Every rule's JSONPaths, parsed once, walked by jsonpath-ng for every event."""
    paths = [parse_extended(p) for i in range(count) for p in rule_paths(i)]
    docs = [memory_payload(n) for n in range(64)]

    def run(n: int) -> None:
        doc = docs[n % len(docs)]
        for path in paths:
            path.find(doc)

    return _timing(_time_events(run, budget_s, least, 5_000))


def run_bench(
    quick: bool = False,
    *,
    postgres: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> BenchReport:
    """The whole bench; `quick` is the test suite's short form (small sizes, 1 s loads);
    `postgres` a server URL for the scale-out section (else a throwaway server)."""
    began = time.monotonic()
    report = BenchReport(QUICK_SIZES if quick else FULL_SIZES)
    budget, least = (0.2, 10) if quick else (3.0, 20)
    folder = Path(tempfile.mkdtemp(prefix="omi-rules-bench-"))
    try:
        for n in report.sizes:
            progress(f"matching with {n:,} rules ...")
            timing, stored, unfired, mix = time_matching(folder / f"rules-{n}", n, budget, least)
            report.matching[n], report.rule_mix[n] = timing, mix
            report.decision_bytes[n], report.unfired_bytes[n] = stored, unfired
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    progress(f"naive matching with {report.middle:,} rules ...")
    report.naive = time_naive(report.middle, budget, least)
    report.load_skipped = wrk_missing()
    if report.load_skipped is None:
        seconds = 1.0 if quick else 10.0
        progress(f"wrk against omi-rules serve with {report.middle:,} rules for {seconds:g} s ...")
        report.receiver = load_receiver(report.middle, seconds, CONNECTIONS)
        progress(f"wrk against omi-rules serve with no rules for {seconds:g} s ...")
        report.receiver_empty = load_receiver(0, seconds, CONNECTIONS)
        progress(f"wrk against the bare endpoint for {seconds:g} s ...")
        report.bare = load_bare(seconds, CONNECTIONS)
        report.scale_out = run_scale_out(
            report.middle, seconds, CONNECTIONS, postgres, progress=progress
        )
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.children_peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report.seconds = time.monotonic() - began
    return report
