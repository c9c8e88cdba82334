"""The short soak: a real server under mixed traffic at half its measured capacity."""

from __future__ import annotations

from engine.soak import run_soak


def test_a_short_soak_loses_nothing_and_keeps_memory_flat() -> None:
    report = run_soak(6.0, probe_seconds=1.5)
    assert report.acknowledged > 100, report.lines()
    assert report.delivered == report.expected_deliveries, report.lines()
    assert report.problems(max_growth_mb=20.0) == [], report.lines()
