"""One webhook's way through the receiver, as plain data: what came (`Incoming`), what
the rules thread made of it (`Prepared`), what the event loop waits on (`Pending`) and the
answer (`Answer`); and the steps that tie a write to others in its transaction (a derived
event is recorded only with the chunk it came from)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

from engine.runtime.audio_streams import FeedUndo
from engine.runtime.payloads import Event
from engine.runtime.pipeline import Outcome
from engine.runtime.sessions import FiringKey, Session
from engine.server.dedupe import DedupeKey
from engine.server.statuses import EventStatus
from engine.triggers import default_triggers

log = logging.getLogger("omi_rules.receiver")


def endpoint_of(trigger: str) -> str:
    """The path `trigger`'s webhook is posted to (the trigger's name when it is unknown or
    derived)."""
    definition = default_triggers().get(trigger)
    return definition.endpoint if definition and definition.endpoint else trigger


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class Incoming:
    trigger: str
    body: bytes
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    content_type: str = ""
    size: int | None = None  # bytes sent, when the body was not read whole


@dataclass
class Prepared:
    """One decoded event on its way to the store (see Receiver.prepare)."""

    event: Event
    key: DedupeKey | None
    params: dict[str, Any]
    repeat_of: str | None = None
    outcome: Outcome | None = None
    status: EventStatus = EventStatus.PROCESSED
    response: dict[str, Any] = field(default_factory=dict)
    store_write: Future[Any] | None = None  # the store's own future
    # the firings this event made (engine.server.session_rows undoes them if unwritten)
    firings: list[tuple[FiringKey, float] | float] = field(default_factory=list)
    # derived events it raised (audio_speech_start/_end), recorded after it
    raised: list[Prepared] = field(default_factory=list)
    # what following an audio chunk changed of its stream, undone if it is not recorded
    audio_undo: FeedUndo | None = None
    written: bool = False  # its write ran (in a transaction not yet known to commit)
    ends: Session | None = None  # a transcript_session_end event: the session it ends

    def committed(self) -> bool:
        """Its write ran and did not fail (the transaction holding it may still be open:
        a write after it in that transaction commits with it, or not at all)."""
        write = self.store_write
        if not self.written or write is None:
            return False
        return not write.done() or (not write.cancelled() and write.exception() is None)


class SourceNotRecorded(RuntimeError):
    """A derived event's chunk was not recorded: the event is not either (Omi's retry of
    the chunk raises it again)."""


class StoreBusy(TimeoutError):
    """An event's write had not begun `answer_deadline` after it was queued."""


class Pending:
    """The loop's side of one webhook in the rules thread: `settled` resolves with the
    Prepared once its write is done (see Receiver.receive)."""

    __slots__ = ("settled", "prepared", "queued_at", "timer")

    def __init__(self, settled: asyncio.Future[Prepared]) -> None:
        self.settled = settled
        self.prepared: Prepared | None = None  # set by the rules thread, write queued
        self.queued_at = 0.0
        self.timer: asyncio.TimerHandle | None = None


def settle_soon(
    loop: asyncio.AbstractEventLoop,
    settled: asyncio.Future[Prepared],
    prepared: Prepared | None,
    exc: BaseException | None,
) -> None:
    """From another thread: resolve `settled` on its loop (unless it is already resolved:
    the deadline passed, or the request was cancelled)."""

    def settle() -> None:
        if settled.done():
            return
        if exc is not None:
            settled.set_exception(exc)
        else:
            settled.set_result(cast(Prepared, prepared))

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[int] = field(default_factory=Counter)


def chain_steps(*steps: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """One write step running `steps` in order (None when there are none)."""
    present = [step for step in steps if step is not None]
    if not present:
        return None

    def run(db: Any) -> None:
        for step in present:
            step(db)

    return run


def mark_written(prepared: Prepared) -> Callable[[Any], None]:
    """The last step of `prepared`'s write: notes that it ran."""

    def mark(_db: Any) -> None:
        prepared.written = True

    return mark


def require_recorded(source: Prepared) -> Callable[[Any], None]:
    """A step of a derived event's write: fails it (rolled back) unless `source`, the
    chunk it came from, was written (in this transaction or one that committed)."""

    def require(_db: Any) -> None:
        if not source.committed():
            raise SourceNotRecorded("the audio chunk it came from was not recorded")

    return require


def log_failure(write: Future[Any]) -> None:
    if not write.cancelled() and write.exception() is not None:
        log.error("could not write session changes: %s", write.exception())
