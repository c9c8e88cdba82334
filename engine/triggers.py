"""What an Omi trigger is, in one definition, and the registry every layer reads.

A trigger is one webhook Omi POSTs: its endpoint, how its body decodes, which template names
its rules get, what in it was said, what makes a repeat, whether it has live sessions. A
derived trigger (no endpoint) is raised by omi-rules itself, e.g. `transcript_session_end`
when a live session goes idle; its stored body decodes the same way, for replay. The
built-ins (package `triggers`) are installed under the `omi_rules.triggers` entry-point group,
the same way a third-party trigger is; an entry point names one `Trigger` or a sequence of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal

import msgspec

ENTRY_POINT_GROUP = "omi_rules.triggers"
MiB = 1024 * 1024

Decoder = Callable[[bytes, str, Mapping[str, Any]], Any]  # (body, uid, query) -> runtime Event
Segments = list[Mapping[str, Any]]


def no_segments(doc: Mapping[str, Any]) -> Segments:
    return []


def no_dedupe_id(doc: Mapping[str, Any]) -> str | None:
    return None


def json_display(body: bytes) -> Any:
    """A stored JSON body as history shows it (None when it is not JSON)."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


@dataclass(frozen=True)
class Trigger:
    """One Omi webhook. `decode(body, uid, query)` returns an `engine.runtime.payloads.Event`
    or raises PayloadError; `aliases(view)` gives the template names (`template_names`) from
    an event view; `spoken(doc)` gives what was said, as segments."""

    name: str
    endpoint: str  # the path Omi POSTs to, e.g. /webhook/memory; "" for a derived trigger
    summary: str  # one line, shown in the OpenAPI docs
    decode: Decoder
    template_names: frozenset[str]
    aliases: Callable[[Any], dict[str, Any]]
    content: Literal["json", "audio"] = "json"
    spoken: Callable[[Mapping[str, Any]], Segments] = no_segments
    dedupe_id: Callable[[Mapping[str, Any]], str | None] = no_dedupe_id  # e.g. the memory id
    live_sessions: bool = False  # segments arrive in pieces of one session (doc["segments"])
    has_text: bool = True  # keywords can apply
    answer_read_by_omi: bool = False  # Omi reads a {"message"} in the answer
    body_limit: int = 4 * MiB  # default; settings.body_limits overrides for the built-ins
    display: Callable[[bytes], Any] = json_display  # a stored body as history shows it

    @property
    def derived(self) -> bool:
        """Raised by omi-rules itself, not posted: no webhook route."""
        return not self.endpoint


class TriggerRegistry(Mapping[str, Trigger]):
    """Triggers by name, in the order they were registered."""

    def __init__(self, triggers: Iterable[Trigger] = ()) -> None:
        self._triggers: dict[str, Trigger] = {}
        for trigger in triggers:
            self.register(trigger)

    def register(self, trigger: Trigger) -> None:
        if not isinstance(trigger, Trigger):
            raise TypeError(f"{trigger!r} is not a Trigger")
        if trigger.name in self._triggers:
            raise ValueError(f"trigger {trigger.name!r} is already registered")
        self._triggers[trigger.name] = trigger

    def unregister(self, name: str) -> None:
        del self._triggers[name]

    def __getitem__(self, name: str) -> Trigger:
        return self._triggers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._triggers)

    def __len__(self) -> int:
        return len(self._triggers)

    def names(self) -> list[str]:
        return list(self._triggers)

    def webhooks(self) -> list[Trigger]:
        """The triggers Omi posts (those with an endpoint), in order."""
        return [t for t in self._triggers.values() if not t.derived]

    def all_template_names(self) -> frozenset[str]:
        return frozenset().union(*(t.template_names for t in self._triggers.values()))


_default: TriggerRegistry | None = None


def default_triggers() -> TriggerRegistry:
    """Every trigger installed under the `omi_rules.triggers` entry-point group."""
    global _default
    if _default is None:
        registry = TriggerRegistry()
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            loaded = entry.load()
            for trigger in loaded if isinstance(loaded, Sequence) else (loaded,):
                registry.register(trigger)
        _default = registry
    return _default
