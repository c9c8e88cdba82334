"""Where the editor's payload comes from: pasted JSON, a shipped sample, a captured event, or
a captured transcript session replayed call by call. Every source becomes decoded events,
through the same decoders as the webhooks (a pasted payload is as hostile as a posted one)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.exceptions import ClientException, NotFoundException
from msgspec import UNSET, Struct, UnsetType

from engine import samples
from engine.errors import PayloadError
from engine.runtime.payloads import Event, decode_event
from engine.server import history
from engine.server.receiver import Receiver


class PayloadChoice(Struct, forbid_unknown_fields=True):
    """One of: `payload` (pasted JSON), `sample` (a name from `omi-rules example --list`),
    `event_id` (a captured event; with `session: true`, its whole live session)."""

    trigger: str | None = None
    payload: Any | UnsetType = UNSET
    sample: str | None = None
    event_id: str | None = None
    session: bool = False
    uid: str = "user123"


def _decode(trigger: str, body: bytes, uid: str) -> Event:
    try:
        return decode_event(trigger, body, uid=uid, session_id="editor", sample_rate=16000)
    except PayloadError as exc:
        raise ClientException(f"payload: {exc.reason}") from None


async def events_for(choice: PayloadChoice, receiver: Receiver, trigger: str) -> list[Event]:
    """The events the choice names (raises a 4xx with the reason when it names none)."""
    if choice.payload is not UNSET:
        body = msgspec.json.encode(choice.payload)
        limit = receiver.body_limit(trigger)
        if len(body) > limit:
            raise ClientException(f"payload: {len(body)} bytes is over the {limit} byte limit")
        return [_decode(trigger, body, choice.uid)]
    if choice.sample:
        try:
            name = samples.pick(None, choice.sample)
        except KeyError as exc:
            raise NotFoundException(str(exc.args[0])) from None
        return [_decode(samples.SAMPLES[name], samples.sample_bytes(name), choice.uid)]
    if choice.event_id:
        event_id = choice.event_id
        if choice.session:
            events = await receiver.store.read(lambda s: history.session_events(s, event_id))
        else:
            events = await receiver.store.read(lambda s: history.events_by_id(s, [event_id]))
        if not events:
            raise NotFoundException(f"no captured event {event_id}")
        return events
    raise ClientException("choose a payload: payload, sample or event_id")
