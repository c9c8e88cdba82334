"""The SDK for a connector whose request is an HTTP call: the request, its sending, its judging.

A new connector is one module exposing `connector`, an object satisfying
`engine.connector.Connector`, registered in the `omi_rules.connectors` entry-point group. For
an HTTP service, subclass `HttpDestination` and `ConnectorBase`, render to an `HttpRequest`,
and send it with `send_http`:

    class Shout(HttpDestination, ConnectorBase[ShoutOptions, HttpRequest]):
        name = "shout"
        summary = "Post the text to the shout service"
        Options = ShoutOptions          # a msgspec Struct: what a `do:` item may say
        Request = HttpRequest

        def render(self, options: ShoutOptions, env: RenderEnv) -> HttpRequest:
            return HttpRequest("POST", options.url, headers=bearer(env.secret("SHOUT_TOKEN")),
                               json={"text": options.text})

        async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
            return delivered(await send_http(request, env, self.name, describe=json_message))

    connector = Shout()

`HttpDestination` gives the connector its `destination` (the URL: delivery limits, the
circuit breaker and host trust work per host), its `deadline` (the request's timeout) and
its `describe` (the method, URL, headers
and body, as dry-run shows them). `send_http` goes through the outbound guard, adds the
action's Idempotency-Key, and raises DeliveryError the way delivery expects:

2xx is delivered; 408, 425, 429 and 5xx, timeouts and connection errors are retryable
(honouring Retry-After); any other status is permanent, and so is a request the client
refuses to send (bad URL, bad header, a redirect loop) or the outbound guard refuses. The
service's own error text is kept in the DeliveryError so it reaches history: a connector
passes `describe` to pull it out of the service's error body (`error_text`, `json_message`,
or its own over `json_answer`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable, Collection
from typing import Any

import httpx
import msgspec
from msgspec import UNSET, Struct, UnsetType

from connectors.audio_body import AudioBody, read_audio, request_parts
from engine.connector import Delivered, Probe, SendEnv
from engine.errors import DeliveryError

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_ERROR_TEXT = 500


class HttpRequest(Struct, omit_defaults=True):
    """Exactly what goes on the wire (headers hold secrets: mask before showing)."""

    method: str
    url: str
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    json: Any | UnsetType = UNSET
    form: dict[str, str] | UnsetType = UNSET
    body: str | UnsetType = UNSET
    timeout: float = 15.0
    expect_status: list[int] = []
    audio: AudioBody | None = None  # read at send time (connectors.audio_body)


def describe_http(request: HttpRequest) -> str:
    """`METHOD URL`, then the headers, then the query, JSON, form or body."""
    lines = [f"{request.method} {request.url}"]
    lines.extend(f"{name}: {value}" for name, value in request.headers.items())
    shown = msgspec.to_builtins(request)
    for key in ("query", "json", "form", "body", "audio"):
        if key in shown:
            text = json.dumps(shown[key], indent=2, ensure_ascii=False)
            lines.extend((text if key == "json" else f"{key}: {text}").splitlines())
    return "\n".join(lines)


class HttpDestination:
    """Mixin for connectors whose Request is an HttpRequest: it goes to its URL, and is
    described as the HTTP call it is."""

    def destination(self, request: HttpRequest) -> str | None:
        return request.url

    def describe(self, request: HttpRequest) -> str:
        return describe_http(request)

    def deadline(self, request: HttpRequest) -> float | None:
        return request.timeout


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(response: httpx.Response) -> str:
    """The response body as the service wrote it (shortened), or the reason phrase."""
    text = response.text.strip()
    return text[:MAX_ERROR_TEXT] if text else response.reason_phrase


def json_answer(response: httpx.Response) -> Any:
    """The response body decoded as JSON, or None when it is not JSON."""
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return None


def json_message(response: httpx.Response) -> str:
    """The `message` of a JSON error body ({"message": ...}), else the body text."""
    answer = json_answer(response)
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return answer["message"][:MAX_ERROR_TEXT]
    return error_text(response)


def _header_values(headers: dict[str, str]) -> dict[str, str | bytes]:
    # httpx encodes header values as ASCII; send other text as UTF-8 rather than fail
    return {k: v if v.isascii() else v.encode() for k, v in headers.items()}


def _refused(connector: str, url: str, exc: DeliveryError) -> DeliveryError:
    """The guard's refusal (which names no connector) for `connector`'s request to `url`."""
    message = exc.message
    if exc.url and exc.url != url:
        message += f" (redirected to {exc.url})"
    return DeliveryError(
        message, connector=connector, status=exc.status, url=url, retryable=exc.retryable
    )


async def send_http(
    request: HttpRequest,
    env: SendEnv,
    connector: str,
    *,
    describe: Callable[[httpx.Response], str] = error_text,
    retryable_status: Collection[int] = RETRYABLE_STATUS,
) -> httpx.Response:
    """Send `request`; return the response when its status is expected, else raise."""
    headers: dict[str, Any] = _header_values(request.headers)
    if env.idempotency_key:
        headers.setdefault("Idempotency-Key", env.idempotency_key)
    kwargs: dict[str, Any] = {}
    if request.json is not UNSET:
        kwargs["content"] = msgspec.json.encode(request.json)
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif request.form is not UNSET:
        kwargs["data"] = request.form
    elif request.body is not UNSET:
        kwargs["content"] = request.body.encode()
    url = request.url
    if request.audio is not None:
        try:
            data = await asyncio.to_thread(read_audio, request.audio, env)
        except (LookupError, OSError, ValueError) as exc:  # gone: sending again cannot help
            raise DeliveryError(
                f"no audio to send ({request.audio.source} {request.audio.ref}): {exc}",
                connector=connector,
                url=url,
            ) from None
        kwargs.update(request_parts(request.audio, data, headers))
    try:
        await env.guard(url)
        # merged into the URL's own query (httpx's params= would replace it)
        target = httpx.URL(url).copy_merge_params(request.query) if request.query else url
        response = await env.client.request(
            request.method,
            target,
            headers=headers,
            timeout=request.timeout,
            **kwargs,
        )
    except DeliveryError as exc:  # the guard, before the first hop or a redirect
        raise _refused(connector, url, exc) from None
    except httpx.TimeoutException as exc:
        raise DeliveryError(
            f"timed out after {request.timeout:g}s ({type(exc).__name__})",
            connector=connector,
            url=url,
            retryable=True,
        ) from None
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
        # the request itself is wrong (scheme, header value): sending again cannot help
        raise DeliveryError(f"{type(exc).__name__}: {exc}", connector=connector, url=url) from None
    except httpx.TransportError as exc:  # connection refused or reset, DNS, TLS...
        raise DeliveryError(
            f"{type(exc).__name__}: {exc}", connector=connector, url=url, retryable=True
        ) from None
    except (httpx.RequestError, httpx.InvalidURL) as exc:  # too many redirects, bad URL
        raise DeliveryError(f"{type(exc).__name__}: {exc}", connector=connector, url=url) from None
    expected = request.expect_status
    status = response.status_code
    if status in expected if expected else response.is_success:
        return response
    message = describe(response)
    if expected:
        message += f" (expected status {', '.join(map(str, expected))})"
    raise DeliveryError(
        message,
        connector=connector,
        status=status,
        url=url,
        retryable=status in retryable_status,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


def delivered(response: httpx.Response) -> Delivered:
    return Delivered(status=response.status_code, response=response.text[:MAX_ERROR_TEXT])


def bearer(token: str) -> dict[str, str]:
    # a token pasted into a secrets file often carries a trailing newline
    return {"Authorization": f"Bearer {token.strip()}"}


async def probe_http(
    request: HttpRequest,
    env: SendEnv,
    connector: str,
    *,
    describe: Callable[[httpx.Response], str] = error_text,
) -> Probe:
    """Send a connector's test request (`Connector.probe`) and report the service's answer;
    never raises for the service's refusal (that is what a test shows)."""
    try:
        response = await send_http(request, env, connector, describe=describe)
    except DeliveryError as exc:
        return Probe(ok=False, status=exc.status, answer=exc.message)
    return Probe(ok=True, status=response.status_code, answer=error_text(response))
