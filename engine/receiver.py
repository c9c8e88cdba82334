"""The receiving side of the server, free of HTTP details: authenticate, decode, match,
durably record (event + planned actions in one group-committed transaction), answer.

Matching and rendering are CPU work done before the answer (a `notify` action's text rides
in the response); connector calls are not: they wait in the outbox for the delivery workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from engine import signing
from engine.capture import Deduper, dedupe_key, new_event_id, record_rejection, write_event
from engine.config import Settings
from engine.delivery import Deliverer
from engine.errors import PayloadError, SecretError
from engine.limits import Limits
from engine.live_rules import LiveRules
from engine.loader import RuleSet
from engine.outbox import recover_in_flight
from engine.payloads import Event, decode_event
from engine.pipeline import Outcome, Pipeline
from engine.secrets import Secrets
from engine.sessions import SessionStore
from engine.store import Store

log = logging.getLogger("omi_rules.receiver")

TRIGGER_ENDPOINTS = {
    "memory": "/webhook/memory",
    "transcript": "/webhook/transcript",
    "audio": "/webhook/audio",
    "day_summary": "/webhook/day-summary",
}


class Unauthorized(PayloadError):
    """The request's signature or token is missing or wrong (401)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=401)


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


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[int] = field(default_factory=Counter)


STOP_TIMEOUT = 10.0  # seconds background tasks get to finish on shutdown
JSON_TYPES = ("application/json", "text/json", "text/plain")
AUDIO_TYPES = ("application/octet-stream", "audio/")


class Receiver:
    def __init__(self, settings: Settings, *, secrets: Secrets | None = None) -> None:
        self.settings = settings
        self.secrets = secrets or Secrets.load(settings.secrets)
        self.store = Store(settings.db)
        self.live_rules = LiveRules(settings.rules, on_change=self._rules_changed)
        limits = Limits.from_settings(settings)
        self.pipeline = Pipeline(
            RuleSet(),
            self.secrets,
            data_dir=settings.data_dir,
            sessions=SessionStore(settings.session_idle, limits.sessions),
            limits=limits,
        )
        self.deduper = Deduper(settings.dedupe_window)
        self.counters = Counters()
        self.deliverer = Deliverer(
            self.store, self.live_rules.registry, lambda: self.secrets, settings, self.read_audio
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._recording: dict[str, asyncio.Future[Any]] = {}  # event id -> its pending write

    # -- life cycle -------------------------------------------------------------------
    def _rules_changed(self, rules: RuleSet) -> None:
        self.pipeline.rules = rules
        for rule in rules.rules:
            missing = self.secrets.missing(rule.secrets)
            if missing:
                log.warning(
                    "rule %s (%s:%d) is skipped until these secrets are set: %s",
                    rule.id,
                    rule.file,
                    rule.line,
                    ", ".join(missing),
                )

    async def start(self) -> None:
        self.live_rules.reload()
        recovered = recover_in_flight(self.store)
        if recovered:
            log.warning(
                "resuming %d action(s) that were in flight when the server stopped", recovered
            )
        self.deduper.seed(self.store, time.time())
        self._tasks.append(asyncio.create_task(self.deliverer.run(), name="delivery"))
        if self.settings.watch_rules:
            self._tasks.append(asyncio.create_task(self.live_rules.watch(), name="rules-watch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("task %s did not stop within %ss", task.get_name(), STOP_TIMEOUT)
                task.print_stack()
        self._tasks.clear()
        await asyncio.to_thread(self.store.close)

    def read_audio(self, event_id: str) -> bytes:
        rows = self.store.query("SELECT body FROM events WHERE id = ?", (event_id,))
        if not rows:
            raise LookupError(f"no stored event {event_id}")
        return rows[0]["body"]

    # -- receiving --------------------------------------------------------------------
    def authenticate(self, incoming: Incoming, uid: str) -> None:
        settings = self.settings
        if settings.signing_secret:
            reason = signing.refusal(
                incoming.headers.get(signing.SIGNATURE_HEADER),
                settings.signing_secret,
                uid=uid,
                body=incoming.body,
                tolerance=settings.signature_tolerance,
            )
            if reason is None:
                return
            if not settings.token:
                raise Unauthorized(reason)
        if settings.token:
            given = incoming.query.get("token") or incoming.headers.get("x-omi-rules-token")
            auth = incoming.headers.get("authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not signing.token_matches(given, settings.token):
                raise Unauthorized("missing or wrong token")

    def check_content_type(self, incoming: Incoming) -> None:
        kind = incoming.content_type.split(";")[0].strip().lower()
        if not kind:
            return
        allowed = AUDIO_TYPES if incoming.trigger == "audio" else JSON_TYPES
        if not (kind.startswith(allowed) or kind.endswith("+json")):
            raise PayloadError(f"content type {kind} not accepted (send {allowed[0]})", status=415)

    def decode(self, incoming: Incoming) -> Event:
        uid = (incoming.query.get("uid") or "").strip()
        if not uid:
            raise PayloadError("missing uid query parameter")
        if len(incoming.body) > self.settings.max_body_bytes:
            raise PayloadError(f"body over {self.settings.max_body_bytes} bytes", status=413)
        self.check_content_type(incoming)
        self.authenticate(incoming, uid)
        try:
            return decode_event(
                incoming.trigger,
                incoming.body,
                uid=uid,
                session_id=incoming.query.get("session_id", ""),
                sample_rate=incoming.query.get("sample_rate"),
            )
        except RecursionError:  # the JSON decoder's depth limit: bad input, not a crash
            raise PayloadError("JSON nested too deeply") from None

    async def receive(self, incoming: Incoming) -> Answer:
        """Answer one webhook; only a recorded event gets 200."""
        try:
            event = self.decode(incoming)
        except PayloadError as exc:
            return await self.reject(incoming, exc)
        now = time.time()
        event.received_at = now
        event.id = new_event_id(now)
        idempotency = incoming.headers.get("x-omi-idempotency-key") or incoming.headers.get(
            "idempotency-key"
        )
        key = dedupe_key(event, idempotency)
        params = {
            k: incoming.query[k] for k in ("sample_rate", "session_id") if k in incoming.query
        }
        repeat_of = self.deduper.claim(key, event.id, now)
        if repeat_of is not None:
            return await self.acknowledge_repeat(incoming, event, key, params, repeat_of)
        try:
            outcome = self.pipeline.process(event, now)
            status = "processed"
        except Exception:  # noqa: BLE001 - a bug in a rule's processing must not lose the event
            log.exception("processing a %s event failed; it is kept for replay", event.trigger)
            outcome, status = Outcome(event), "error"
        response: dict[str, Any] = {}
        message = outcome.notify_message()
        if message:
            response["message"] = message
        recording = asyncio.wrap_future(
            write_event(
                self.store,
                event,
                outcome,
                body=incoming.body,
                params=params,
                key=key,
                status=status,
                response=response,
                secrets=self.secrets,
            )
        )
        self._recording[event.id] = recording  # a concurrent repeat waits for this
        try:
            await recording
        except Exception:
            self.deduper.release(key)
            log.exception("could not record a %s event", event.trigger)
            return Answer(503, {"error": "could not record the event; retry"})
        finally:
            self._recording.pop(event.id, None)
        self.counters.accepted += 1
        if outcome.actions:
            self.deliverer.wake.set()
        return Answer(200, response)

    async def acknowledge_repeat(
        self,
        incoming: Incoming,
        event: Event,
        key: str | None,
        params: dict[str, Any],
        repeat_of: str,
    ) -> Answer:
        """An Omi retry of a delivery already recorded: kept for history, acted on once,
        answered with the first answer (its notify message included)."""
        first = self._recording.get(repeat_of)
        if first is not None:  # the first delivery is still being written: its fate is ours
            try:
                await asyncio.shield(first)
            except (Exception, asyncio.CancelledError):
                if not (first.done() and (first.cancelled() or first.exception())):
                    raise  # this request itself was cancelled
                return Answer(503, {"error": "could not record the event; retry"})
        self.counters.duplicates += 1
        rows = self.store.query("SELECT response FROM events WHERE id = ?", (repeat_of,))
        response = msgspec.json.decode(rows[0]["response"] or "{}") if rows else {}
        stored = response
        try:
            response = self.secrets.unmask(stored)  # stored masked; Omi gets the real text
        except SecretError:
            log.warning("a secret in the first answer to %s is no longer set", repeat_of)
        try:
            await asyncio.wrap_future(
                write_event(
                    self.store,
                    event,
                    None,
                    body=incoming.body,
                    params=params,
                    key=key,
                    status="duplicate",
                    response={**stored, "duplicate_of": repeat_of},
                    secrets=self.secrets,
                )
            )
        except Exception:  # noqa: BLE001 - the original is on disk; this row is only history
            log.exception("could not record a repeated delivery")
        return Answer(200, response)

    async def reject(self, incoming: Incoming, exc: PayloadError) -> Answer:
        self.counters.rejected[exc.status] += 1
        reason = exc.reason.splitlines()[0] if exc.reason else "bad request"
        log.info("rejected %s webhook: %d %s", incoming.trigger, exc.status, reason)
        future = record_rejection(
            self.store,
            endpoint=TRIGGER_ENDPOINTS.get(incoming.trigger, incoming.trigger),
            status=exc.status,
            reason=reason,
            uid=incoming.query.get("uid"),
            size=len(incoming.body),
            keep=self.settings.keep_rejections,
        )
        try:
            await asyncio.wrap_future(future)
        except Exception:  # noqa: BLE001 - a rejection that cannot be recorded is still refused
            log.exception("could not record a rejection")
        return Answer(exc.status, {"error": reason})

    # -- questions --------------------------------------------------------------------
    def setup_completed(self, uid: str) -> bool:
        """Whether some enabled rule would act for this user with the secrets set now."""
        for rule in self.pipeline.rules.rules:
            if not rule.enabled or (rule.uids is not None and uid not in rule.uids):
                continue
            if not self.secrets.missing(rule.secrets):
                return True
        return False

    def health(self) -> dict[str, Any]:
        pending = self.store.query("SELECT status, COUNT(*) AS n FROM actions GROUP BY status")
        rules = self.pipeline.rules
        return {
            "status": "ok",
            "rules": len(rules.rules),
            "rule_errors": len(rules.errors),
            "accepted": self.counters.accepted,
            "duplicates": self.counters.duplicates,
            "rejected": sum(self.counters.rejected.values()),
            "actions": {row["status"]: row["n"] for row in pending},
        }
