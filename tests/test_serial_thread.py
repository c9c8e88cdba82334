"""engine.server.serial_thread: jobs run one at a time, in order, and a failing job does
not stop the ones after it."""

from __future__ import annotations

import threading

import pytest

from engine.server.serial_thread import SerialThread


def test_jobs_run_in_order_on_one_thread_and_shutdown_runs_the_queued_ones() -> None:
    worker = SerialThread("test-serial")
    seen: list[tuple[int, str]] = []
    for n in range(200):
        worker.submit(lambda n: seen.append((n, threading.current_thread().name)), n)
    worker.shutdown()
    assert [n for n, _name in seen] == list(range(200))
    assert {name for _n, name in seen} == {"test-serial"}


def test_a_failing_job_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker = SerialThread("test-serial")
    done = threading.Event()

    def fail() -> None:
        raise ValueError("boom")

    worker.submit(fail)
    worker.submit(done.set)
    assert done.wait(5)
    worker.shutdown()
    assert "a job in the test-serial thread failed" in caplog.text
    assert "ValueError: boom" in caplog.text


def test_no_thread_until_the_first_job_and_none_after_shutdown() -> None:
    worker = SerialThread("test-serial")
    assert not [t for t in threading.enumerate() if t.name == "test-serial"]
    worker.shutdown()  # never started: nothing to stop
    with pytest.raises(RuntimeError, match="test-serial thread is shut down"):
        worker.submit(print)
