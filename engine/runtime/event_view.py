"""One event as the conditions of many rules see it, with per-event work done once.

JSONPath selections are cached by expression text and spoken text by speaker filter, so
a thousand rules asking the same question of an event cost one walk, not a thousand.

For keyword slots (engine.rules.slots) a view also says whether it is a closing evaluation
(`closing`: no new speech, raised when an open slot's wait is over or the session ends),
when the session last brought new speech (`last_heard`, by default `now`), when the call
before this one did (`previous_heard`), and when a closing evaluation last ran since the
last speech (`closed_at`: a slot it closed does not fire again). An event that is not
part of a live session (a memory) is `complete`: the end of its words closes a slot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.rules.budget import Budget
from engine.rules.jsonpaths import select
from engine.rules.spoken import LOOKBACK_WORDS, SpokenText
from engine.rules.templates import Templates
from engine.runtime.payloads import Event
from engine.triggers import default_triggers


def spoken_segments(event: Event) -> list[Mapping[str, Any]]:
    """What was said in an event, as segments (its trigger's definition says where)."""
    return default_triggers()[event.trigger].spoken(event.doc)


class EventView:
    def __init__(
        self,
        event: Event,
        templates: Templates,
        *,
        secrets: Mapping[str, Any],
        now: float | None = None,
        session_segments: Sequence[Mapping[str, Any]] | None = None,
        first_new_segment: int = 0,
        max_text: int | None = None,
        budget: Budget | None = None,
        closing: bool = False,
        last_heard: float | None = None,
        previous_heard: float | None = None,
        closed_at: float | None = None,
        session_ended: bool = False,
        user: Mapping[str, Any] | None = None,
    ) -> None:
        self.event = event
        # `user` in templates: uid and per-user settings (engine.runtime.user_values)
        self.user = user if user is not None else {"uid": event.uid, "settings": {}}
        self.doc = event.doc
        self.templates = templates
        self.now = now if now is not None else time.time()
        self.closing = closing
        self.last_heard = last_heard if last_heard is not None else self.now
        self.previous_heard = previous_heard
        self.closed_at = closed_at
        self.session_ended = session_ended  # a closing evaluation at the session's end
        self.secrets = secrets
        self.segments = (
            list(session_segments) if session_segments is not None else spoken_segments(event)
        )
        # the event's own text, not a live session's: nothing more will be said, so the
        # end of its words closes a keyword slot still open there (a memory's transcript)
        self.complete = session_segments is None
        self.first_new_segment = first_new_segment
        self.max_text = max_text  # characters of speech keyword matching scans
        self.budget = budget or Budget.unlimited()
        self._selected: dict[str, list[Any]] = {}
        self._spoken: dict[tuple[str, int], SpokenText] = {}
        self._context: dict[str, Any] | None = None
        self.rule: dict[str, Any] = {}  # the rule being checked, for template conditions

    @property
    def session(self) -> dict[str, Any]:
        return {
            "id": self.event.session_id,
            "segments": self.segments,
            "text": " ".join(str(s.get("text") or "").strip() for s in self.segments),
        }

    def select(self, expression: str) -> list[Any]:
        values = self._selected.get(expression)
        if values is None:
            values = select(expression, self.doc)
            self._selected[expression] = values
        return values

    def spoken(self, speaker: str, lookback_words: int = LOOKBACK_WORDS) -> SpokenText:
        """This call's new words and `lookback_words` before them (slot phrases ask for
        more: KeywordMatcher.lookback_words)."""
        spoken = self._spoken.get((speaker, lookback_words))
        if spoken is None:
            spoken = SpokenText.of(
                self.segments,
                self.first_new_segment,
                speaker,  # type: ignore[arg-type]
                lookback_words=lookback_words,
                max_chars=self.max_text,
            )
            self._spoken[(speaker, lookback_words)] = spoken
        return spoken

    def spoken_session(self, speaker: str) -> SpokenText:
        """All the session's words (every word counts as new), for `count:`; the session
        is bounded by its limits, so no `max_text` cut here."""
        key = ("session:" + speaker, 0)
        spoken = self._spoken.get(key)
        if spoken is None:
            spoken = SpokenText.of(self.segments, 0, speaker)  # type: ignore[arg-type]
            self._spoken[key] = spoken
        return spoken

    def context(self) -> dict[str, Any]:
        """The template context shared by every rule (rule, item and match are added per use)."""
        if self._context is None:
            self._context = {
                "event": self.doc,
                "uid": self.event.uid,
                "now": datetime.fromtimestamp(self.now, UTC),
                "secrets": self.secrets,
                "user": self.user,
                **default_triggers()[self.event.trigger].aliases(self),
            }
        return self._context

    def render(self, source: str, *, field: str) -> str:
        """Render a condition's template for the rule being checked."""
        context = {**self.context(), "rule": self.rule}
        return self.templates.render(source, context, rule_id=self.rule.get("id", ""), field=field)
