"""One worker thread that runs jobs in the order they were given (the receiver's rules
thread: decoding, matching and rendering stay off the event loop, one event at a time).

Lighter than a one-worker ThreadPoolExecutor on the webhook's path: a job is a plain
callable on a SimpleQueue, with no concurrent Future (and its lock) made for it; a job that
has something to say tells the event loop itself (loop.call_soon_threadsafe).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("omi_rules.serial_thread")


class SerialThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Run `job(*args)` after the jobs given before it; an exception it raises is
        logged (a job that must report one catches it itself)."""
        if self._closed:
            raise RuntimeError(f"{self.name} thread is shut down")
        if self._thread is None:
            with self._lock:  # started on first use: a Receiver never started costs nothing
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
        self._jobs.put((job, args))

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, args = item
            try:
                job(*args)
            except BaseException:  # the thread must outlive a bad job
                log.exception("a job in the %s thread failed", self.name)

    def shutdown(self) -> None:
        """Run the jobs already given, then stop."""
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
