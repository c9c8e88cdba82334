"""Delivery workers: send what the outbox holds, concurrently, with a limit per target.

Runs beside the web server, never inside a request. Each action is decoded into its
connector's Request, secrets are filled in, and the result is written back: delivered,
pending again after a backoff (transient failure, honouring Retry-After), or dead.

One slow or failing destination must not hold up the others: each attempt has a total
deadline (not only a per-read timeout), at most `workers_per_target` actions are in flight
to one target, and a target that keeps failing is left alone for a while (engine.server.breaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from secrets import token_hex as random_token
from typing import Any

import httpx
import msgspec

from engine.config import Settings
from engine.connector import (
    EVENT_BODY,
    Connector,
    Registry,
    SendEnv,
    deadline_of,
    destination_of,
    needs_of,
    ordered_connectors,
)
from engine.errors import DeliveryError, SecretError
from engine.outbound import OutboundGuard, make_client
from engine.rules.trust import HostTrust
from engine.secrets import Secrets
from engine.server.breaker import Breakers
from engine.server.metrics import Metrics
from engine.server.outbox import (
    DueAction,
    backoff,
    claim_due,
    mark_delivered,
    mark_failed,
    renew_leases,
)
from engine.server.sealed import Sealer
from engine.server.store import Store

log = logging.getLogger("omi_rules.delivery")
USER_SEAL = "<secret:user."  # a request holding a user's secret setting (sealed)


class Deliverer:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        secrets: Callable[[], Secrets],
        settings: Settings,
        event_body: Callable[[str], bytes],
        sealer: Sealer,
        *,
        trusted: Callable[[str], bool] | None = None,
        metrics: Metrics | None = None,
        user_secrets: Callable[[Store, str], Secrets] | None = None,
    ) -> None:
        self.store = store
        # the secrets with the per-user ones of an event's user (blocking: a reader thread)
        self.user_secrets = user_secrets
        self.sealer = sealer
        self.registry = registry
        self.secrets = secrets
        self.settings = settings
        self.event_body = event_body  # the EVENT_BODY capability
        # loopback and private addresses only for hosts the owner named (engine.rules.trust)
        self.guard = OutboundGuard(settings.outbound_allow, settings.outbound_deny, trusted=trusted)
        # an action reading a per-user setting (and every setup test): the user may have
        # chosen its destination, so only outbound_allow_hosts may reach loopback and
        # private addresses, never a host a rule or a server secret names (any port)
        self.user_guard = OutboundGuard(
            settings.outbound_allow,
            settings.outbound_deny,
            trusted=HostTrust(frozenset(), tuple(settings.outbound_allow_hosts)),
        )
        self.client: httpx.AsyncClient | None = None
        self.user_client: httpx.AsyncClient | None = None
        self.wake = asyncio.Event()
        self.metrics = metrics or Metrics()
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooloff)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending: set[int] = set()  # ids of the actions this receiver holds leased
        self.owner = random_token(8)  # names this deliverer's leases

    async def claim(self, free: int) -> list[DueAction]:
        """Due actions for targets with room, none for an open circuit, one probe each."""
        now = time.time()
        due = await claim_due(
            self.store,
            now,
            free,
            per_target=self.settings.workers_per_target,
            blocked=self.breakers.blocked(now),
            single=self.breakers.half_open(now),
            ordered=ordered_connectors(self.registry),
            lease=self.settings.outbox_lease,
            owner=self.owner,
        )
        for action in due:
            self.breakers.claimed(action.target, now)
        return due

    async def run(self) -> None:
        self.client = make_client(self.guard)
        self.user_client = make_client(self.user_guard)
        capacity = self.settings.workers_per_connector * max(1, len(self.registry))
        renewing = asyncio.create_task(self._renew_leases())
        try:
            while True:
                free = capacity - len(self._tasks)
                try:
                    due = await self.claim(free) if free > 0 else []
                except Exception:  # a failing store must not end delivery for good
                    log.exception("could not claim due actions; trying again")
                    await asyncio.sleep(self.settings.poll_interval)
                    continue
                for action in due:
                    self._sending.add(action.id)
                    task = asyncio.create_task(self._deliver_leased(action))
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
                if len(due) == free and free > 0:
                    continue  # more may be due right now
                self.wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # arrives with the wake, and shutdown would then hang
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval):
                        await self.wake.wait()
        finally:
            renewing.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.client.aclose()
            await self.user_client.aclose()

    async def _renew_leases(self) -> None:
        """Every third of the lease: the actions being sent stay leased to this receiver
        (a send may take longer than one lease; only a dead receiver's run out)."""
        lease = self.settings.outbox_lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await renew_leases(
                    self.store, sorted(self._sending), time.time() + lease, self.owner
                )
            except Exception:  # the next round tries again; a lost lease means a resend
                log.exception("could not renew the leases of actions being sent")

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.wake.set()

    async def _deliver_leased(self, action: DueAction) -> None:
        try:
            await self._deliver(action)
        finally:
            self._sending.discard(action.id)

    async def _deliver(self, action: DueAction) -> None:
        connector = self.registry.get(action.connector)
        now = time.time()
        if connector is None:
            self.breakers.released(action.target)
            await self._mark_failed(
                action,
                now=now,
                status=None,
                retry_at=None,
                error=f"connector {action.connector!r} is not installed",
            )
            return
        secrets = self.secrets()
        user_secrets = self.user_secrets
        if user_secrets is not None and USER_SEAL in action.request:
            secrets = await self.store.read(lambda store: user_secrets(store, action.event_id))
        try:
            request = msgspec.convert(
                self.sealer.unseal(msgspec.json.decode(action.request), secrets, action.idem_key),
                connector.Request,
            )
        except (SecretError, msgspec.ValidationError) as exc:
            self.breakers.released(action.target)
            await self._mark_failed(action, now=now, status=None, retry_at=None, error=str(exc))
            return
        guard, client = self.guard, self.client
        if action.user_chosen:
            guard, client = self.user_guard, self.user_client
        env = SendEnv(
            client=client,  # type: ignore[arg-type]
            secret=secrets.lookup(placeholders=False),
            guard=lambda url: guard.check(url, connector.name),
            idempotency_key=action.idem_key,
            event_body=self.event_body if EVENT_BODY in needs_of(connector) else None,
            data_dir=self.settings.data_dir,
        )
        deadline = self.deadline(connector, request)
        try:
            async with asyncio.timeout(deadline):
                result = await connector.send(request, env)
        except TimeoutError:
            await self._failed(
                action,
                DeliveryError(
                    f"timed out after {deadline:g}s (total deadline)",
                    connector=connector.name,
                    url=destination_of(connector, request) or "",
                    retryable=True,
                ),
                secrets,
            )
            return
        except DeliveryError as exc:
            await self._failed(action, exc, secrets)
            return
        except Exception as exc:  # a connector bug must not kill the worker
            log.error(
                "connector %s crashed on action %s: %s",
                connector.name,
                action.id,
                secrets.masked_traceback(exc),
            )
            await self._failed(
                action,
                DeliveryError(
                    f"{type(exc).__name__}: {exc}", connector=connector.name, retryable=False
                ),
                secrets,
            )
            return
        self.breakers.succeeded(action.target)
        await mark_delivered(
            self.store,
            action,
            now=time.time(),
            status=result.status,
            response=secrets.mask(result.response),
        )
        self.metrics.actions.labels(action.connector, "delivered").inc()

    async def _mark_failed(
        self,
        action: DueAction,
        *,
        now: float,
        status: int | None,
        retry_at: float | None,
        error: str,
    ) -> None:
        """Write a failed attempt back (pending again at `retry_at`, else dead), then count it."""
        await mark_failed(
            self.store, action, now=now, status=status, retry_at=retry_at, error=error
        )
        outcome = "retry" if retry_at is not None else "dead"
        self.metrics.actions.labels(action.connector, outcome).inc()

    def deadline(self, connector: Connector[Any, Any], request: msgspec.Struct) -> float:
        """Seconds the whole attempt may take: the connector's deadline when it names one."""
        timeout = deadline_of(connector, request)
        if isinstance(timeout, int | float) and timeout > 0:
            return float(timeout)
        return self.settings.delivery_deadline

    async def _failed(
        self, action: DueAction, exc: DeliveryError, secrets: Secrets | None = None
    ) -> None:
        secrets = secrets or self.secrets()
        attempts = action.attempts + 1
        now = time.time()
        if exc.retryable:
            self.breakers.failed(action.target, now, secrets.mask(str(exc)))
        else:  # the target answered (or could not be asked): not the target's failure
            self.breakers.succeeded(action.target)
        retry_at = None
        if exc.retryable and attempts < self.settings.retry.max_attempts:
            retry_at = now + backoff(self.settings.retry, attempts, exc.retry_after)
        message = secrets.mask(str(exc))
        log.warning(
            "action %s (%s, rule %s) attempt %d failed: %s%s",
            action.id,
            action.connector,
            action.rule_id,
            attempts,
            message,
            "" if retry_at is not None else " -> dead letter",
        )
        await self._mark_failed(
            action, now=now, status=exc.status, retry_at=retry_at, error=message
        )
