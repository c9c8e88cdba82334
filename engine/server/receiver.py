"""The receiving side of the server, free of HTTP details: authenticate, decode, match,
durably record (event + planned actions in one group-committed transaction), answer.

Matching and rendering are CPU work done before the answer (a `notify` action's text rides
in the response); connector calls are not: they wait in the outbox for the delivery workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import msgspec

from engine.config import Settings
from engine.errors import PayloadError, SecretError
from engine.rules.compiled import RuleSet
from engine.rules.live_rules import LiveRules
from engine.rules.user_setup import applying_rules
from engine.runtime.audio_streams import AudioStreams, SpeechChange
from engine.runtime.limits import Limits
from engine.runtime.payloads import Event, decode_event
from engine.runtime.pipeline import Outcome, Pipeline
from engine.runtime.sessions import (
    EndedBy,
    FiringGate,
    Session,
    SessionStore,
    session_end_doc,
)
from engine.secrets import Secrets
from engine.server import rule_versions, session_rows, signing
from engine.server.capture import (
    answer_context,
    dedupe_key,
    record_rejection,
    stamp,
    write_event,
)
from engine.server.dedupe import DedupeKey, Deduper, RepeatOf
from engine.server.delivery import USER_SEAL, Deliverer
from engine.server.metrics import OUTBOX_STATES, Metrics
from engine.server.outbox import counts_by_status, recover_in_flight
from engine.server.receipt import (
    Answer,
    Counters,
    Incoming,
    Pending,
    Prepared,
    StoreBusy,
    chain_steps,
    endpoint_of,
    log_failure,
    mark_written,
    require_recorded,
    settle_soon,
)
from engine.server.retention import sweep_daily
from engine.server.sealed import Sealer
from engine.server.serial_thread import SerialThread
from engine.server.setting_keys import SettingsCipher
from engine.server.shared_keys import check_keys
from engine.server.shared_sessions import SharedSessions
from engine.server.statuses import EventStatus
from engine.server.store import Db, Store
from engine.server.user_settings import CACHE_USERS, UserSettings
from engine.server.webhook_auth import authenticate
from engine.triggers import default_triggers

log = logging.getLogger("omi_rules.receiver")
T = TypeVar("T")


STOP_TIMEOUT = 10.0  # seconds background tasks get to finish on shutdown
SESSION_CHECK_SECONDS = 1.0  # how often idle transcript sessions are ended
SESSION_END = "transcript_session_end"
LIVE = "transcript"  # the trigger whose calls make live sessions
AUDIO = "audio"  # the trigger whose chunks make audio streams (speech start/end)
SESSION_WRITE_WAIT = 30.0  # seconds a call waits for its session's previous write
# Omi always names its type. text/plain, form types or none at all are what a web page can
# post cross-site without asking (a "simple" request), so they are refused.
JSON_TYPES = ("application/json",)
AUDIO_TYPES = ("application/octet-stream", "audio/")


class Receiver:
    def __init__(self, settings: Settings, *, secrets: Secrets | None = None) -> None:
        self.settings = settings
        self.secrets = secrets or Secrets.load(settings.secrets)
        self.store = Store(settings.db)
        # what each Omi user entered on the setup page (engine.server.user_settings)
        self.user_settings = UserSettings(
            self.store,
            SettingsCipher.for_settings(settings),
            lambda: self.secrets,
            lambda: self.pipeline.rules.secret_settings,
            # another receiver may change or disconnect a user: read each time, not cached
            cache_users=0 if self.store.dialect.shared else CACHE_USERS,
        )
        self.live_rules = LiveRules(settings.rules, on_change=self._rules_changed)
        limits = Limits.from_settings(settings)
        self.pipeline = Pipeline(
            RuleSet(),
            self.secrets,
            data_dir=settings.data_dir,
            sessions=SessionStore(
                settings.session_idle,
                limits.sessions,
                self._session_ended,
                journal=True,
                shared=self.store.dialect.shared,
            ),
            gate=FiringGate(journal=True),
            allow_hosts=settings.outbound_allow_hosts,
            limits=limits,
            user_settings=self.user_settings.values,
        )
        # receivers sharing the store: sessions and firings decided under a lock, read back
        self.shared = (
            SharedSessions(
                self.store, self.pipeline.sessions, self.pipeline.gate, wait=SESSION_WRITE_WAIT
            )
            if self.store.dialect.shared
            else None
        )
        self._cooldown_triggers: frozenset[str] = frozenset()  # with a rule that has one
        self.deduper = Deduper(settings.dedupe_window)
        self.counters = Counters()
        self.metrics = Metrics()
        self.sealer = Sealer.for_data_dir(settings.data_dir)
        self.deliverer = Deliverer(
            self.store,
            self.live_rules.registry,
            lambda: self.secrets,
            settings,
            self.event_body,
            self.sealer,
            trusted=self.pipeline.trusts,
            metrics=self.metrics,
            user_secrets=self._user_secrets,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._recording: dict[str, Future[Any]] = {}  # event id -> its pending write
        # decoding, matching and rendering run here, one event at a time, in arrival order
        self._rules_thread = SerialThread("rules")
        # sessions that ended, to raise as transcript_session_end (rules thread only)
        self._ended: list[tuple[Session, EndedBy]] = []
        # session number -> the write of the call that ended it: raised once that commits
        self._end_writes: dict[int, Future[Any]] = {}
        # (uid, session id) -> the write of its last call (rules thread only)
        self._session_writes: dict[tuple[str, str], Future[Any]] = {}
        # closing evaluations a call found overdue (rules thread only; see _decide_and_write)
        self._closed_early: list[Prepared] = []
        # voice activity per audio stream (rules thread only)
        self.audio_streams = AudioStreams(settings.audio, settings.data_dir)

    # -- life cycle -------------------------------------------------------------------
    def _rules_changed(self, rules: RuleSet) -> None:
        rule_versions.remember(self.store, rules, self.secrets)  # names rules.version
        self.pipeline.rules = rules
        self._cooldown_triggers = frozenset(
            rule.trigger for rule in rules.rules if rule.enabled and rule.cooldown is not None
        )
        self.user_settings.rules_changed()
        # utterance WAVs only while a rule may send or read them
        self.audio_streams.write_files = any(
            rule.enabled for rule in rules.for_trigger("audio_speech_end")
        )
        for warning in rules.warnings:
            log.warning("%s", warning)
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

    def _user_secrets(self, store: Store, event_id: str) -> Secrets:
        """The secrets with those of `event_id`'s user (blocking)."""
        rows = store.query("SELECT uid FROM events WHERE id = ?", (event_id,))
        if not rows:
            return self.secrets
        return self.user_settings.values(rows[0]["uid"]).secrets

    def check_keys(self) -> None:
        """ConfigError when another receiver of a shared store seals or encrypts with
        other keys (blocking; `serve` asks before it starts serving, start() again)."""
        if self.store.dialect.shared:  # another receiver may send what this one seals
            check_keys(
                self.store,
                sealing=self.sealer.fingerprint(),
                settings=self.user_settings.cipher.fingerprints,
            )

    async def start(self) -> None:
        await asyncio.to_thread(self.check_keys)
        self.live_rules.reload()
        rotated = self.user_settings.rotate_all()
        if rotated:
            log.info("re-encrypted %d user setting(s) with the first of settings_keys", rotated)
        unreadable = self.user_settings.unreadable()
        if unreadable:
            log.warning(
                "%d stored user secret(s) open with none of settings_keys (a key was lost or "
                "dropped too soon): those users must enter them again",
                unreadable,
            )
        encrypted = self.user_settings.encrypt_declared()
        if encrypted:
            log.info("encrypted %d user setting(s) a rule now declares secret", encrypted)
        recovered = recover_in_flight(self.store)
        if recovered:
            log.warning(
                "resuming %d action(s) that were in flight when the server stopped", recovered
            )
        now = time.time()
        await self.store.read(lambda store: self.deduper.seed(store, now))

        def restore() -> int:
            found = session_rows.restore(self.store, self.pipeline.sessions, self.pipeline.gate)
            self._flush_changes()
            return found

        restored = await self.in_rules_thread(restore)
        if restored:
            log.info("resuming %d live transcript session(s) from the store", restored)
        self._tasks.append(asyncio.create_task(self.deliverer.run(), name="delivery"))
        if self.settings.retention_days > 0:
            sweep = sweep_daily(self.store, self.settings.retention_days, time.time)
            self._tasks.append(asyncio.create_task(sweep, name="retention"))
        if self.settings.watch_rules:
            self._tasks.append(asyncio.create_task(self.live_rules.watch(), name="rules-watch"))
        self._tasks.append(asyncio.create_task(self._end_sessions_often(), name="session-end"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _done, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in stuck:
                log.error("task %s did not stop within %ss", task.get_name(), STOP_TIMEOUT)
                task.print_stack()
        self._tasks.clear()
        self._rules_thread.shutdown()
        after = self.shared.close if self.shared is not None else None
        await asyncio.to_thread(self.store.close, after)

    def event_body(self, event_id: str) -> bytes:
        """The stored body of an event (blocking: connectors call it off the loop)."""
        rows = self.store.query("SELECT body FROM events WHERE id = ?", (event_id,))
        if not rows:
            raise LookupError(f"no stored event {event_id}")
        return bytes(rows[0]["body"])

    async def in_rules_thread(self, fn: Callable[[], T]) -> T:
        """`fn()` run in the rules thread, after what was given to it before."""
        job: Future[T] = Future()

        def run() -> None:
            try:
                job.set_result(fn())
            except BaseException as exc:
                job.set_exception(exc)

        self._rules_thread.submit(run)
        return await asyncio.wrap_future(job)

    # -- derived events: a live session's end ------------------------------------------
    def _session_ended(self, session: Session, ended_by: EndedBy, now: float) -> None:
        """SessionStore.on_end, in the rules thread: raised by the next check."""
        self._ended.append((session, ended_by))

    async def _end_sessions_often(self) -> None:
        while True:
            await asyncio.sleep(SESSION_CHECK_SECONDS)
            try:
                await self.end_sessions()
            except Exception:  # the next check tries again
                log.exception("could not end idle transcript sessions")

    async def end_sessions(self) -> int:
        """End the sessions idle for `session_idle` and raise one transcript_session_end
        event for each session that ended (here or on a call since the last check): decided
        and recorded like a webhook event. Returns how many were recorded. Sessions are in
        the store (engine.server.session_rows): one open when the server stops ends after
        the restart, and one whose end could not be recorded ends again after one. Audio
        streams idle for `audio.stream_idle` are dropped here too (their open utterance
        raises audio_speech_end)."""
        raised = await self.in_rules_thread(lambda: self._raise_session_ends(time.time()))
        recorded = await self._await_raised(raised)
        # old utterance files go at most once an hour, on a worker thread (a folder walk)
        await asyncio.to_thread(self.audio_streams.prune_due, time.time())
        return recorded

    async def _await_raised(self, raised: list[Prepared]) -> int:
        """Wait for the writes of derived events; count those recorded, put back what an
        unrecorded one changed, wake delivery for their actions."""
        recorded = 0
        for prepared in raised:
            write = prepared.store_write
            try:
                if write is None:
                    raise RuntimeError("not written")
                await asyncio.wrap_future(write)
            except Exception as exc:
                log.error(
                    "could not record a %s event of session %s of uid %s: %s",
                    prepared.event.trigger,
                    prepared.event.session_id,
                    prepared.event.uid,
                    exc,
                )
                self.metrics.events.labels(prepared.event.trigger, "unrecorded").inc()
                self._rules_thread.submit(self._write_failed, prepared)
                continue
            recorded += 1
            self.count_recorded(prepared)
            if prepared.outcome is not None and prepared.outcome.actions:
                self.deliverer.wake.set()
        return recorded

    def _raise_session_ends(self, now: float) -> list[Prepared]:
        """In the rules thread: close the open slots that waited long enough, expire idle
        sessions, then decide and queue the write of each ended session's event (its body
        the session document, decoded as any stored body is, so history and dry-run replay
        it)."""
        holds = (
            self.shared.hold_due(now, self.settings.session_idle) if self.shared is not None else []
        )
        try:
            return self._end_sessions_held(now)
        finally:
            if self.shared is not None:
                self.shared.done_all(holds)

    def _end_sessions_held(self, now: float) -> list[Prepared]:
        raised, self._closed_early = self._closed_early, []
        for session in self.pipeline.sessions:
            if session.waiting_until is not None and session.waiting_until <= now:
                closing = self._close_slots(session, now)
                if closing is not None:
                    raised.append(closing)
        if len(self.pipeline.sessions):
            self.pipeline.sessions.expire(now)
        self._forget_settled_writes()
        ended, self._ended = self._ended, []
        for session, ended_by in ended:
            write = self._end_writes.get(session.number)
            if write is not None and (
                not write.done() or write.cancelled() or write.exception() is not None
            ):  # the call that ended it is still being written, or failed: then _unend
                self._ended.append((session, ended_by))  # drops it (Omi sends it again)
                continue
            self._end_writes.pop(session.number, None)
            if session.waiting_until is not None:  # its open slots close with it
                closing = self._close_slots(session, now, ended=True)
                if closing is not None:
                    raised.append(closing)
            body = msgspec.json.encode(session_end_doc(session, ended_by))
            event = stamp(decode_event(SESSION_END, body, uid=session.uid), now)
            prepared = Prepared(event, None, {}, ends=session)
            try:
                # the session's rows go in the transaction that records its end
                self._decide_and_write(prepared, body, now, also=session_rows.gone_rows(session))
            except Exception:
                log.exception("could not raise the end of session %s", session.key)
                self._end_not_recorded(session)
                continue
            finally:
                self._recording.pop(event.id, None)  # no repeat can wait for it
            raised.append(prepared)
        waiting = {session.number for session, _why in self._ended}
        self._end_writes = {n: w for n, w in self._end_writes.items() if n in waiting}
        raised.extend(self._raise_speech(self.audio_streams.expire(now), now))
        self._flush_changes()
        return raised

    def _raise_speech(
        self, changes: list[SpeechChange], now: float, source: Prepared | None = None
    ) -> list[Prepared]:
        """In the rules thread: decide and queue the write of each speech start or end
        (engine.runtime.audio_streams), its body the document, as any stored body; with
        a `source` (the chunk that made it), written only if that chunk's write was."""
        after = require_recorded(source) if source is not None else None
        raised = []
        for change in changes:
            body = msgspec.json.encode(change.doc)
            event = stamp(decode_event(change.trigger, body, uid=change.uid), now)
            prepared = Prepared(event, None, {"session_id": change.session_id})
            try:
                self._decide_and_write(prepared, body, now, after=after)
            except Exception:
                log.exception("could not raise %s for uid %s", change.trigger, change.uid)
                continue
            finally:
                self._recording.pop(event.id, None)  # no repeat can wait for it
            raised.append(prepared)
        return raised

    def _flush_changes(self) -> None:
        """Session changes no event carried (an empty session expired, a duplicate row
        found on start): written on their own (rules thread)."""
        firings = self.pipeline.gate.take_changes()
        rows = session_rows.rows_of(self.pipeline.sessions.take_changes(), firings)
        if rows:
            write = self.store.submit(rows.apply)
            write.add_done_callback(log_failure)

    def _close_slots(self, session: Session, now: float, *, ended: bool = False) -> Prepared | None:
        """In the rules thread: decide `session`'s transcript rules once more with its open
        slots closed (engine.rules.keywords: a slot still being spoken waits at most its
        `slot_wait`, or until the session ends: `ended`). Recorded as a transcript call with
        no segments and `closing` in its params, acted on like one; its actions reach no
        webhook answer."""
        waiting, session.waiting_until = session.waiting_until, None  # set again if still
        body = msgspec.json.encode({"session_id": session.session_id, "segments": []})
        event = stamp(decode_event(LIVE, body, uid=session.uid, session_id=session.session_id), now)
        event.closing = True
        why = "session_end" if ended else "slot_wait"
        prepared = Prepared(event, None, {"session_id": session.session_id, "closing": why})
        # an ended session is not saved by its decision: that it was closed is written with
        # it, so a restart before its end event is written does not close it again
        closed = session_rows.closed_rows(session, now) if ended else None
        try:
            self._decide_and_write(
                prepared, body, now, also=closed, ended=session if ended else None
            )
        except Exception:
            session.waiting_until = waiting  # the next check tries again
            log.exception("could not close the open slots of session %s", session.key)
            return None
        finally:
            self._recording.pop(event.id, None)  # no repeat can wait for it
        return prepared

    # -- receiving --------------------------------------------------------------------
    def body_limit(self, trigger: str) -> int:
        """The largest body `trigger`'s webhook takes: settings.body_limits for a built-in,
        else its definition's default."""
        default = default_triggers()[trigger].body_limit
        return int(getattr(self.settings.body_limits, trigger, default))

    async def refuse_oversize(self, incoming: Incoming, size: int) -> Answer:
        """A body over the limit, refused before it was read whole: still recorded."""
        incoming.size = size
        limit = self.body_limit(incoming.trigger)
        return await self.reject(incoming, PayloadError(f"body over {limit} bytes", status=413))

    def check_content_type(self, incoming: Incoming) -> None:
        kind = incoming.content_type.split(";")[0].strip().lower()
        audio = default_triggers()[incoming.trigger].content == "audio"
        allowed = AUDIO_TYPES if audio else JSON_TYPES
        if not kind.startswith(allowed) and (audio or not kind.endswith("+json")):
            shown = f"content type {kind}" if kind else "no content type"
            raise PayloadError(f"{shown} not accepted (send {allowed[0]})", status=415)

    def check_chunk_length(self, incoming: Incoming) -> None:
        """An audio chunk longer than `audio.max_chunk` seconds is refused (413) before it
        is measured: a low `sample_rate` makes a body within the byte limit hours long."""
        try:
            rate = int(incoming.query.get("sample_rate") or 0)
        except ValueError:
            return  # decoding refuses it, with its reason
        limit = self.settings.audio.max_chunk
        if rate > 0 and len(incoming.body) / 2 / rate > limit:
            seconds = len(incoming.body) / 2 / rate
            raise PayloadError(
                f"audio chunk of {seconds:.1f} s at {rate} Hz is over {limit:g} s "
                "(audio.max_chunk)",
                status=413,
            )

    def decode(self, incoming: Incoming) -> Event:
        uid = (incoming.query.get("uid") or "").strip()
        if not uid:
            raise PayloadError("missing uid query parameter")
        if "\x00" in uid or "\x00" in incoming.query.get("session_id", ""):
            raise PayloadError("a NUL character in uid or session_id")
        limit = self.body_limit(incoming.trigger)
        if len(incoming.body) > limit:
            raise PayloadError(f"body over {limit} bytes", status=413)
        self.check_content_type(incoming)
        authenticate(
            self.settings,
            uid=uid,
            body=incoming.body,
            query=incoming.query,
            headers=incoming.headers,
        )
        if incoming.trigger == AUDIO:
            self.check_chunk_length(incoming)
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

    def prepare(self, incoming: Incoming) -> Prepared:
        """Everything an event costs before its write, run in the rules thread (never on
        the event loop): decode and authenticate, recognize a repeat, match and render,
        then queue the write. Raises PayloadError for a body to refuse."""
        event = self.decode(incoming)
        now = time.time()
        stamp(event, now)
        idempotency = incoming.headers.get("x-omi-idempotency-key") or incoming.headers.get(
            "idempotency-key"
        )
        signed = incoming.headers.get(signing.SIGNATURE_HEADER, "")
        key = dedupe_key(
            event,
            idempotency,
            delivery_id=incoming.headers.get("x-omi-delivery"),
            signatures=signing.parse(signed)[1] if self.settings.signing_secret else None,
        )
        params = {
            k: incoming.query[k] for k in ("sample_rate", "session_id") if k in incoming.query
        }
        prepared = Prepared(event, key, params)
        prepared.repeat_of = self.deduper.claim(key, event.id, now)
        if prepared.repeat_of is not None:
            return prepared
        speech: list[SpeechChange] = []
        if event.trigger == AUDIO:
            speech = self.audio_streams.feed(event, now)
            prepared.audio_undo = self.audio_streams.last_undo
            params["session_duration_s"] = event.doc["session_duration_s"]
            params["speaking"] = event.doc["speaking"]  # a replay sees what the rules saw
        try:
            self._decide_and_write(prepared, incoming.body, now, after=mark_written(prepared))
        except BaseException:
            self._undo_audio(prepared)
            raise
        prepared.raised = self._raise_speech(speech, now, source=prepared)
        return prepared

    def _undo_audio(self, prepared: Prepared) -> None:
        """In the rules thread: an audio chunk that was not recorded is unfollowed (its
        stream and utterance files as before it), so Omi's retry is followed once."""
        undo, prepared.audio_undo = prepared.audio_undo, None
        if undo is not None:
            self.audio_streams.undo(undo)

    def _decide_and_write(
        self,
        prepared: Prepared,
        body: bytes,
        now: float,
        also: session_rows.Rows | None = None,
        ended: Session | None = None,
        after: Callable[[Any], None] | None = None,
    ) -> None:
        """In the rules thread: match and render `prepared.event`, then queue its write:
        the event row, its actions and what it changed of the live sessions and firings
        (and `also`), in one transaction."""
        event, key, params = prepared.event, prepared.key, prepared.params
        live = default_triggers()[event.trigger].live_sessions
        session_key = (event.uid, event.session_id)
        taken = False  # the journals were taken: memory is ahead of the store
        hold = None  # the shared store's lock on what this event reads of sessions/firings
        held = (event.uid, event.session_id if live else "")
        try:
            if self.shared is not None and (live or event.trigger in self._cooldown_triggers):
                hold = self.shared.hold(held, live=live)
            elif live:
                self._settle_session(session_key)
            if live and not event.closing:
                self._close_overdue(session_key, now)
            started = time.perf_counter()
            ends_before = len(self._ended)  # sessions this call ends (a new conversation)
            try:
                outcome = self.pipeline.process(event, now, ended=ended)
                status = EventStatus.PROCESSED
            except Exception as exc:  # a bug in a rule must not lose the event
                log.error(
                    "processing a %s event failed; it is kept for replay: %s",
                    event.trigger,
                    self.secrets.masked_traceback(exc),
                )
                outcome, status = Outcome(event), EventStatus.ERROR
            self.metrics.observe_matching(event.trigger, time.perf_counter() - started)
            prepared.outcome, prepared.status = outcome, status
            taken = True
            rows = self._changes(prepared)
            if also:
                rows.statements.extend(also.statements)
                rows.many.extend(also.many)
            message = outcome.inline_reply()
            if message:
                prepared.response["message"] = message
            secrets = self.secrets
            if outcome.user is not None and any(d.rule.settings for d in outcome.matched):
                # a user's secret settings are sealed in the stored requests too: those
                # the rules were rendered with (not read again: a save between the two
                # reads would leave the rendered value unsealed)
                secrets = outcome.user.secrets
            prepared.store_write = write_event(
                self.store,
                event,
                outcome,
                body=body,
                params=params,
                key=key,
                status=status,
                response=prepared.response,
                secrets=secrets,
                sealer=self.sealer,
                also=chain_steps(rows.apply if rows else None, after),
                dedupe_window=self.settings.dedupe_window,
            )
        except BaseException:
            # nothing was queued: let go of the claim, so Omi's retry is recorded, not
            # taken for a repeat of an event that never reached the store
            self.deduper.release(key)
            if taken:  # and memory goes back to what the store has
                self._drop_ends(self._ends_of(session_key, ends_before))
                if live:
                    self._reload(session_key)
                session_rows.undo_firings(self.store, self.pipeline.gate, prepared.firings)
            if self.shared is not None:
                self.shared.done(held, hold, None)
            raise
        # a repeat (prepared after this, in this thread) waits for this write and shares
        # its fate
        self._recording[event.id] = prepared.store_write
        for session, _why in self._ends_of(session_key, ends_before):  # they wait for it
            self._end_writes[session.number] = prepared.store_write
        if self.shared is not None:  # the next call reads the session back, under the lock
            self.shared.done(held, hold, prepared.store_write)
        elif live:
            self._session_writes[session_key] = prepared.store_write

    def _close_overdue(self, key: tuple[str, str], now: float) -> None:
        """Before a call: a slot of its session whose wait is over is closed first, as the
        next check would have (a call just after the wait, or the first after a restart,
        would otherwise find the slot waited for and closed, but not fired)."""
        session = self.pipeline.sessions.get(*key)
        if session is None or session.waiting_until is None or session.waiting_until > now:
            return
        closing = self._close_slots(session, now)
        if closing is not None:
            self._closed_early.append(closing)  # recorded and counted by the next check

    def _changes(self, prepared: Prepared) -> session_rows.Rows:
        """What deciding `prepared` changed of the sessions and firings, as rows (memory
        has changed already: a write that fails puts it back, see _write_failed)."""
        prepared.firings = self.pipeline.gate.take_changes()
        return session_rows.rows_of(self.pipeline.sessions.take_changes(), prepared.firings)

    def _settle_session(self, key: tuple[str, str]) -> None:
        """In the rules thread, before a live call is decided: the session's previous
        call must be on disk first (the two are decided in order; a write that failed
        puts the session back to what the store has, so the retry of that call is new)."""
        write = self._session_writes.get(key)
        if write is None:
            return
        try:
            write.result(timeout=SESSION_WRITE_WAIT)
        except TimeoutError:  # still pending: it stays the one the next call waits for
            raise StoreBusy(f"the store was busy for {SESSION_WRITE_WAIT:g}s") from None
        except BaseException:  # did not commit (cancelled, or failed)
            del self._session_writes[key]
            self._unend(write)
            self._reload(key)
        else:
            del self._session_writes[key]

    def _forget_settled_writes(self) -> None:
        """Drop the writes of sessions not heard again that are done (rules thread)."""
        for key, write in list(self._session_writes.items()):
            if write.done():
                self._settle_session(key)

    def _reload(self, key: tuple[str, str]) -> None:
        """Memory's view of a session and its firings put back to what the store has."""
        session_rows.reload_session(self.store, self.pipeline.sessions, self.pipeline.gate, *key)

    def _ends_of(self, key: tuple[str, str], since: int) -> list[tuple[Session, EndedBy]]:
        """The sessions of `key` ended since `_ended` held `since` entries: those a call of
        that session ended (a new conversation), not idle ones of other users that a sweep
        inside its decision expired."""
        return [(s, why) for s, why in self._ended[since:] if (s.uid, s.session_id) == key]

    def _unend(self, write: Future[Any] | None) -> None:
        """In the rules thread: `write` did not commit, so the sessions deciding it ended
        (a new conversation) did not end (Omi's retry of the call ends them again)."""
        if write is not None:
            numbers = {n for n, w in self._end_writes.items() if w is write}
            self._drop_ends([(s, why) for s, why in self._ended if s.number in numbers])

    def _drop_ends(self, ends: list[tuple[Session, EndedBy]]) -> None:
        """These ends are not raised: their sessions did not end after all, and reading
        the store back may bring them back (un-retired)."""
        if not ends:
            return
        numbers = {session.number for session, _why in ends}
        self._ended = [(s, why) for s, why in self._ended if s.number not in numbers]
        for number in numbers:
            self._end_writes.pop(number, None)
            self.pipeline.sessions.unretire(number)

    def _end_not_recorded(self, session: Session) -> None:
        """In the rules thread: the write of `session`'s end event failed, so its rows are
        still in the store: it may come back from there (un-retired), and end again."""
        self.pipeline.sessions.unretire(session.number)
        if self.shared is None:
            self._reload((session.uid, session.session_id))

    def _write_failed(self, prepared: Prepared) -> None:
        """In the rules thread: an event's write did not commit, so what deciding it
        changed in memory is put back to what the store has."""
        event = prepared.event
        key = (event.uid, event.session_id)
        self._unend(prepared.store_write)
        if prepared.ends is not None:
            self._end_not_recorded(prepared.ends)
        # otherwise the session's next call found it so and put the session back already
        if self._session_writes.get(key) is prepared.store_write:
            del self._session_writes[key]
            self._reload(key)
        session_rows.undo_firings(self.store, self.pipeline.gate, prepared.firings)

    async def receive(self, incoming: Incoming) -> Answer:
        """Answer one webhook; only a recorded event gets 200. The rules thread prepares
        the event and queues its write; the loop wakes once, when the write has committed
        (or the event was refused or is a repeat)."""
        loop = asyncio.get_running_loop()
        pending = Pending(loop.create_future())
        self._rules_thread.submit(self._prepare_and_write, incoming, pending, loop)
        deadline = self.settings.answer_deadline
        pending.timer = loop.call_later(deadline, self._past_deadline, pending, loop)
        try:
            prepared = await pending.settled
        except PayloadError as exc:
            return await self.reject(incoming, exc)
        except StoreBusy as exc:
            answer = self._unrecorded(pending.prepared, exc)
            if pending.prepared is not None:
                await self._await_raised(pending.prepared.raised)
            return answer
        finally:
            pending.timer.cancel()
            if pending.prepared is not None:
                self._recording.pop(pending.prepared.event.id, None)
        event, key = prepared.event, prepared.key
        if prepared.repeat_of is not None:
            return await self.acknowledge_repeat(
                incoming, event, key, prepared.params, prepared.repeat_of
            )
        write = prepared.store_write
        if write is None or write.cancelled() or write.exception() is not None:
            error = write.exception() if write is not None and not write.cancelled() else None
            if isinstance(error, RepeatOf):  # another receiver recorded it first
                return await self._repeat_found(incoming, prepared, error.event_id)
            answer = self._unrecorded(prepared, error)
            await self._await_raised(prepared.raised)  # not written either: put back
            return answer
        self.counters.accepted += 1
        self.count_recorded(prepared)
        if prepared.outcome is not None and prepared.outcome.actions:
            self.deliverer.wake.set()
        if prepared.raised:
            await self._await_raised(prepared.raised)
        return Answer(200, prepared.response)

    def _prepare_and_write(
        self, incoming: Incoming, pending: Pending, loop: asyncio.AbstractEventLoop
    ) -> None:
        """In the rules thread: prepare (which queues the write), then settle `pending` on
        the loop once the write is done, or at once for a refusal or a repeat."""
        try:
            prepared = self.prepare(incoming)
        except BaseException as exc:
            settle_soon(loop, pending.settled, None, exc)
            return
        pending.queued_at = time.monotonic()
        pending.prepared = prepared
        write = prepared.store_write
        if write is None:
            settle_soon(loop, pending.settled, prepared, None)
        else:
            settled = pending.settled
            write.add_done_callback(lambda _done: settle_soon(loop, settled, prepared, None))

    def _past_deadline(self, pending: Pending, loop: asyncio.AbstractEventLoop) -> None:
        """`answer_deadline` after the write was queued (a locked database): give up with
        TimeoutError if the write has not begun, so Omi gets a 503 before its own 15 s
        timeout and retries. A write already running is waited for: it may commit."""
        if pending.settled.done():
            return
        deadline = self.settings.answer_deadline
        prepared = pending.prepared
        left = deadline if prepared is None else pending.queued_at + deadline - time.monotonic()
        if left > 0:  # still being matched, or queued less than the deadline ago
            pending.timer = loop.call_later(left, self._past_deadline, pending, loop)
        elif prepared is not None and prepared.store_write and prepared.store_write.cancel():
            pending.settled.set_exception(StoreBusy(f"the store was busy for {deadline:g}s"))

    async def _repeat_found(self, incoming: Incoming, prepared: Prepared, repeat_of: str) -> Answer:
        """The store found `prepared` a repeat at its write (the first delivery came to
        another receiver sharing the store): what deciding it changed is put back, like
        an unrecorded event's, and it is answered as the repeat it is."""
        event = prepared.event
        self._rules_thread.submit(self.deduper.repeats, prepared.key, repeat_of, time.time())
        self._rules_thread.submit(self._write_failed, prepared)
        self._rules_thread.submit(self._undo_audio, prepared)
        await self._await_raised(prepared.raised)
        return await self.acknowledge_repeat(
            incoming, event, prepared.key, prepared.params, repeat_of
        )

    def _unrecorded(self, prepared: Prepared | None, exc: BaseException | None) -> Answer:
        """A write that did not commit: the claim on its dedupe key is let go (Omi's retry
        is not a repeat) and Omi is told to retry."""
        if prepared is not None:
            self._rules_thread.submit(self.deduper.release, prepared.key)
            self._rules_thread.submit(self._write_failed, prepared)
            self._rules_thread.submit(self._undo_audio, prepared)
            trigger = prepared.event.trigger
            log.error("could not record a %s event", trigger, exc_info=exc or None)
            self.metrics.events.labels(trigger, "unrecorded").inc()
        return Answer(503, {"error": "could not record the event; retry"})

    def count_recorded(self, prepared: Prepared) -> None:
        """Metrics for an event now on disk: its status, and each rule that fired."""
        self.metrics.count_event(prepared.event.trigger, prepared.status)
        for decision in prepared.outcome.matched if prepared.outcome else ():
            self.metrics.rule_fires.labels(decision.rule.id).inc()

    async def acknowledge_repeat(
        self,
        incoming: Incoming,
        event: Event,
        key: DedupeKey | None,
        params: dict[str, Any],
        repeat_of: str,
    ) -> Answer:
        """An Omi retry of a delivery already recorded: kept for history, acted on once,
        answered with the first answer (its notify message included)."""
        first = self._recording.get(repeat_of)
        if first is not None:  # the first delivery is still being written: its fate is ours
            try:
                await asyncio.shield(asyncio.wrap_future(first))
            except (Exception, asyncio.CancelledError):
                if not (first.done() and (first.cancelled() or first.exception())):
                    raise  # this request itself was cancelled
                self.metrics.events.labels(event.trigger, "unrecorded").inc()
                return Answer(503, {"error": "could not record the event; retry"})
        self.counters.duplicates += 1
        self.metrics.events.labels(event.trigger, EventStatus.DUPLICATE).inc()
        rows = await self.store.read(
            lambda store: store.query("SELECT response FROM events WHERE id = ?", (repeat_of,))
        )
        if not rows:  # deleted since (Disconnect with its events): not stored again
            log.info("a repeat of event %s, deleted since, is answered and not stored", repeat_of)
            return Answer(200, {})
        response = msgspec.json.decode(rows[0]["response"] or "{}")
        stored = response
        secrets = self.secrets
        if USER_SEAL in (rows[0]["response"] or ""):  # a user's setting in the reply
            secrets = await self.store.read(lambda _s: self.user_settings.values(event.uid).secrets)
        try:
            # stored sealed; Omi gets the real text, and only what the rule rendered
            response = self.sealer.unseal(stored, secrets, answer_context(repeat_of))
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
                    status=EventStatus.DUPLICATE,
                    response={**stored, "duplicate_of": repeat_of},
                    secrets=self.secrets,
                    sealer=self.sealer,
                )
            )
        except Exception:  # the original is on disk; this row is only history
            log.exception("could not record a repeated delivery")
        return Answer(200, response)

    async def reject(self, incoming: Incoming, exc: PayloadError) -> Answer:
        self.counters.rejected[exc.status] += 1
        self.metrics.events.labels(incoming.trigger, "rejected").inc()
        self.metrics.rejections.labels(incoming.trigger, str(exc.status)).inc()
        reason = exc.reason.splitlines()[0] if exc.reason else "bad request"
        log.info("rejected %s webhook: %d %s", incoming.trigger, exc.status, reason)
        future = record_rejection(
            self.store,
            endpoint=endpoint_of(incoming.trigger),
            status=exc.status,
            reason=reason,
            uid=incoming.query.get("uid"),
            size=incoming.size if incoming.size is not None else len(incoming.body),
            keep=self.settings.keep_rejections,
        )
        try:
            await asyncio.wrap_future(future)
        except Exception:  # a rejection that cannot be recorded is still refused
            log.exception("could not record a rejection")
        return Answer(exc.status, {"error": reason})

    async def disconnect(self, uid: str, *, forget_events: bool) -> tuple[int, int]:
        """Remove `uid`'s settings and, with `forget_events`, its stored events, actions,
        rejections and live transcript sessions (dropped without raising their end), as
        one step of the rules thread and one write: an event decided before it is deleted
        with the rest, one decided after finds no session. Returns (settings, events)."""
        settings_write = self.user_settings.disconnect_write(uid, forget_events=forget_events)
        sessions_write = session_rows.forget_uid(uid)

        def forget() -> Future[Any]:
            if forget_events:
                for session in [s for s in self.pipeline.sessions if s.uid == uid]:
                    self.pipeline.sessions.drop(uid, session.session_id)
                    self._session_writes.pop((uid, session.session_id), None)
                self._ended = [(s, why) for s, why in self._ended if s.uid != uid]
                gate = self.pipeline.gate
                gate.restore((key, None) for key in gate.keys() if key[1] == uid)

            def write(db: Db) -> tuple[int, int]:
                if forget_events:
                    sessions_write(db)
                return settings_write(db)

            return self.store.submit(write)

        self.user_settings.forget(uid)
        try:
            result: tuple[int, int] = await asyncio.wrap_future(await self.in_rules_thread(forget))
        finally:
            self.user_settings.forget(uid)
        return result

    # -- questions --------------------------------------------------------------------
    async def setup_completed(self, uid: str) -> bool:
        """Whether some enabled rule would act for this user with the secrets set now, and
        the user has set every required setting of those rules (engine.rules.user_setup)."""
        applying = applying_rules(self.pipeline.rules, uid, self.secrets)
        if not applying:
            return False
        required = frozenset().union(*(rule.required_settings for rule in applying))
        if not required:
            return True
        user = await self.store.read(lambda _store: self.user_settings.values(uid))
        return not user.missing(required)

    async def health(self) -> dict[str, Any]:
        actions = await self.store.read(counts_by_status)
        rules = self.pipeline.rules
        return {
            "status": "ok",
            "rules": len(rules.rules),
            "rule_errors": len(rules.errors),
            "accepted": self.counters.accepted,
            "duplicates": self.counters.duplicates,
            "rejected": sum(self.counters.rejected.values()),
            "actions": actions,
        }

    async def scrape_metrics(self) -> bytes:
        """The metrics text, with the outbox depth read now (on a reader thread)."""

        def scrape(store: Store) -> bytes:
            self.metrics.set_outbox(counts_by_status(store, OUTBOX_STATES))
            return self.metrics.render()

        return await self.store.read(scrape)


def receiver_of(request: Any) -> Receiver:
    """The Receiver an app serves (engine.server.app keeps it in `app.state`)."""
    receiver: Receiver = request.app.state.receiver
    return receiver
