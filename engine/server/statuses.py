"""What became of an event and of an action, as types; stored as the same strings.

EventStatus   processed | error (a bug while matching: kept for replay) | duplicate
ActionStatus  pending --claim--> in_flight --> delivered | pending (retry) | dead
              inline (answered in the webhook response) | error (could not be planned)
"""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    PROCESSED = "processed"  # matched and planned (whatever the rules decided)
    ERROR = "error"  # processing failed; the event is kept for replay
    DUPLICATE = "duplicate"  # a repeat of a recorded delivery: history only, never acted on


class ActionStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    IN_FLIGHT = "in_flight"  # claimed by a delivery worker
    DELIVERED = "delivered"
    DEAD = "dead"  # permanent failure or attempts exhausted (retry through the API/CLI)
    INLINE = "inline"  # returned in the webhook response; nothing to send
    ERROR = "error"  # could not be planned (a template failed): nothing to send


UNFINISHED = (ActionStatus.PENDING, ActionStatus.IN_FLIGHT)  # delivery may still happen
