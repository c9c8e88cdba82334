"""Durations as rule authors write them."""

from __future__ import annotations

import pytest

from engine.durations import parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        (0, 0.0),
        ("45", 45.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        (" 5 m ", 300.0),
        ("2H", 7200.0),
        ("1d2h3m4s", 93784.0),
    ],
)
def test_durations(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5 minutes", "'5 minutes' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("", "'' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("m", "'m' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("5x", "'5x' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("5m garbage", "'5m garbage' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("-5", "'-5' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("nan", "'nan' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        ("inf", "'inf' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)"),
        (-1, "-1 is negative"),
        (float("inf"), "inf is not a duration"),
        (True, "True is not a duration"),
    ],
)
def test_not_durations(value: str | float, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message
