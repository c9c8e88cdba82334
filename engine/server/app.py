"""The HTTP surface (Litestar): a webhook per registered trigger (engine.triggers), setup and
health, the history API, the web editor under `/ui` (package web).

Every request passes engine.server.access first: the Host check, and the admin token (or a
browser's session cookie, with its CSRF token) for all but the webhooks, `/setup*`,
`/health`, the login form and `/ui/static` (so `/metrics` needs it).

Handlers only translate HTTP to the Receiver and back; no connector runs in a request.
OpenAPI docs are at /schema (Swagger UI at /schema/swagger); the webhooks, raw ASGI routes, are
not in them (README, DESIGN.md and engine.triggers describe them).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import msgspec
from litestar import Litestar, Request, Response, asgi, get, post
from litestar.exceptions import HTTPException, InternalServerException, NotFoundException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.params import FromPath, FromQuery
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send

from engine.config import Settings
from engine.rules.rule_files import RuleFolder
from engine.server import history
from engine.server.access import AccessMiddleware, HostCheck, add_security_headers, admin_token
from engine.server.metrics import CONTENT_TYPE
from engine.server.omi_query import recover_query
from engine.server.outbox import retry_action
from engine.server.receipt import Answer, Incoming
from engine.server.receiver import Receiver, receiver_of
from engine.server.statuses import ActionStatus
from engine.triggers import default_triggers
from web import api_handlers, template_config, ui_handlers
from web.session import WebAuth
from web.setup_pages import SetupGuards

API_BODY_LIMIT = 32 * 1024 * 1024  # bytes of a request body to /api or /ui (413 past it)
log = logging.getLogger("omi_rules.app")


def page_size(limit: int) -> int:
    """Between 1 and 1000 (SQLite reads LIMIT -1 as no limit at all)."""
    return max(1, min(limit, 1000))


def query_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The request's query parameters, recovered from Omi's doubled `?` (server.omi_query)."""
    return recover_query(request.scope.get("query_string", b""))


async def read_body(receive: Receive, declared: str, limit: int) -> tuple[bytes | None, int]:
    """The body, or (None, bytes seen) as soon as it is known to be over `limit`: a body
    too large is never held in memory, and is still refused by us (and so recorded)."""
    if declared.isdigit() and int(declared) > limit:
        return None, int(declared)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # answered 500 as Litestar does; nobody reads it
            raise InternalServerException("client disconnected prematurely")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, size
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks), size


def webhook_handler(trigger: str) -> Any:
    """The raw ASGI route of one trigger's endpoint: the webhooks are the hot path, so they
    skip Litestar's request, signature and response objects (engine.server.access has
    already checked the Host; the Receiver checks the rest)."""
    definition = default_triggers()[trigger]

    async def receive_webhook(scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST":
            await send_json(send, 405, {"error": "Method Not Allowed"}, ALLOW_POST)
            return
        receiver: Receiver = scope["app"].state.receiver
        started = time.perf_counter()
        try:
            answer = await _answer(scope, receive, receiver, trigger)
        finally:
            receiver.metrics.observe_request(trigger, time.perf_counter() - started)
        await send_json(send, answer.status, answer.body)

    return asgi(definition.endpoint, name=f"webhook-{trigger}", copy_scope=False)(receive_webhook)


async def _answer(scope: Scope, receive: Receive, receiver: Receiver, trigger: str) -> Answer:
    # ASGI header names are lower case already
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    incoming = Incoming(
        trigger=trigger,
        body=b"",
        query=recover_query(scope.get("query_string", b"")),
        headers=headers,
        content_type=headers.get("content-type", ""),
    )
    limit = receiver.body_limit(trigger)
    body, size = await read_body(receive, headers.get("content-length", ""), limit)
    if body is None:
        return await receiver.refuse_oversize(incoming, size)
    incoming.body = body
    return await receiver.receive(incoming)


ALLOW_POST = ((b"allow", b"POST"),)
JSON_HEADER = (b"content-type", b"application/json")


async def send_json(
    send: Send, status: int, body: Any, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    encoded = msgspec.json.encode(body)
    length = (b"content-length", str(len(encoded)).encode())
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [JSON_HEADER, length, *headers],
    }
    await send(start)
    await send({"type": "http.response.body", "body": encoded, "more_body": False})


def webhook_handlers() -> list[Any]:
    """One route per registered trigger Omi posts (a derived one has none)."""
    return [webhook_handler(trigger.name) for trigger in default_triggers().webhooks()]


@get("/setup/completed", summary="Omi's Setup Completed URL (query: uid)")
async def setup_completed(request: Request[Any, Any, Any]) -> dict[str, bool]:
    uid = query_of(request).get("uid", "").strip()  # older backends append ?uid= to a query
    return {"is_setup_completed": bool(uid) and await receiver_of(request).setup_completed(uid)}


@get("/health", summary="Liveness, rule and outbox counts")
async def health(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await receiver_of(request).health()


@get("/metrics", summary="Prometheus metrics (admin token)", media_type=CONTENT_TYPE)
async def metrics(request: Request[Any, Any, Any]) -> bytes:
    return await receiver_of(request).scrape_metrics()


@get("/api/events", summary="Recent events with what each rule decided")
async def api_events(
    request: Request[Any, Any, Any],
    limit: FromQuery[int] = 50,
    since: FromQuery[float | None] = None,
    trigger: FromQuery[str | None] = None,
    uid: FromQuery[str | None] = None,
) -> list[dict[str, Any]]:
    return await receiver_of(request).store.read(
        lambda store: history.list_events(
            store, limit=page_size(limit), since=since, trigger=trigger, uid=uid
        )
    )


@get("/api/events/{event_id:str}", summary="One event: payload, decisions, actions")
async def api_event(request: Request[Any, Any, Any], event_id: FromPath[str]) -> dict[str, Any]:
    event = await receiver_of(request).store.read(
        lambda store: history.event_detail(store, event_id)
    )
    if event is None:
        raise NotFoundException(f"no event {event_id}")
    return event


@get("/api/actions", summary="Planned and delivered actions (requests masked)")
async def api_actions(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    limit: FromQuery[int] = 100,
) -> list[dict[str, Any]]:
    return await receiver_of(request).store.read(
        lambda store: history.list_actions(store, status=status, limit=page_size(limit))
    )


@get("/api/dead-letters", summary="Actions that gave up; retry them with POST .../retry")
async def api_dead_letters(
    request: Request[Any, Any, Any], limit: FromQuery[int] = 100
) -> list[dict[str, Any]]:
    return await receiver_of(request).store.read(
        lambda store: history.list_actions(store, status=ActionStatus.DEAD, limit=page_size(limit))
    )


@post("/api/actions/{action_id:int}/retry", status_code=202, summary="Send a dead letter again")
async def api_retry(request: Request[Any, Any, Any], action_id: FromPath[int]) -> dict[str, Any]:
    receiver = receiver_of(request)
    retried = 0 < action_id < 2**63 and await asyncio.wrap_future(  # SQLite's INTEGER range
        retry_action(receiver.store, action_id, time.time())
    )
    if not retried:
        raise NotFoundException(f"no dead action {action_id} to retry")
    receiver.deliverer.wake.set()
    return {"id": action_id, "status": ActionStatus.PENDING}


@get("/api/rejections", summary="The last rejected webhooks, with their reasons")
async def api_rejections(
    request: Request[Any, Any, Any], limit: FromQuery[int] = 50
) -> list[dict[str, Any]]:
    return await receiver_of(request).store.read(
        lambda store: history.list_rejections(store, limit=page_size(limit))
    )


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 413:
        detail = "request body too large"
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return Response({"error": detail, **extra}, status_code=exc.status_code)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error(
        "unexpected error on %s %s: %s",
        request.method,
        request.url.path,
        receiver_of(request).secrets.masked_traceback(exc),
    )
    return Response({"error": "internal error"}, status_code=HTTP_500_INTERNAL_SERVER_ERROR)


def create_app(
    settings: Settings, receiver: Receiver | None = None, *, freeze_heap: bool = False
) -> Litestar:
    """The app; `freeze_heap` (for `omi-rules serve`, one app per process) moves what
    exists once the receiver has started (modules, the app, the rules) out of the cyclic
    garbage collector's sight: a full collection over it took 60-75 ms, every half second
    under load, which was the receiver's p99. Not for tests: a frozen cycle is never freed."""
    receiver = receiver or Receiver(settings)
    token, _created = admin_token(settings)
    hosts = HostCheck([*settings.allowed_hosts, settings.host])
    web_auth = WebAuth(token)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await receiver.start()
        if freeze_heap:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await receiver.stop()

    app = Litestar(
        route_handlers=[
            *webhook_handlers(),
            setup_completed,
            health,
            metrics,
            api_events,
            api_event,
            api_actions,
            api_dead_letters,
            api_retry,
            api_rejections,
            *api_handlers(),
            *ui_handlers(),
        ],
        lifespan=[lifespan],
        # a plain ASGI middleware; Litestar's type names its own protocol only
        middleware=[
            DefineMiddleware(
                cast(Any, AccessMiddleware), token=token, hosts=hosts, web_auth=web_auth
            )
        ],
        before_send=[add_security_headers],
        # the API and the editor (an admin pastes a payload: at most an audio chunk's 12 MiB
        # and its JSON); each webhook is raw ASGI and reads with its own limit (read_body)
        request_max_body_size=API_BODY_LIMIT,
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        openapi_config=OpenAPIConfig(title="omi-rules", version="0.1.0", path="/schema"),
        template_config=template_config(),
        logging_config=None,
    )
    app.state.receiver = receiver
    # the editor's writes to rules/*.yaml, one at a time (web.api_rules)
    app.state.rule_folder = RuleFolder(
        settings.rules, settings.data_dir, registry=receiver.live_rules.registry
    )
    app.state.web_auth = web_auth
    app.state.setup = SetupGuards()  # the setup page's one-time tokens and test limit
    return app
