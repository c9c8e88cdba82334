"""Polling instead of sleeping: wait for a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> T:
    """The first truthy result of `check()`, polled until `timeout` seconds pass.

    `what` names the condition in the timeout error; a callable is called then, so the
    message can show the state that was reached instead (the actions, the requests)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"{described or 'condition'} not reached within {timeout}s")
        time.sleep(interval)
