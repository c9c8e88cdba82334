"""The HTTP request most connectors render to, and how it is sent and judged.

2xx is delivered; 408, 425, 429 and 5xx, timeouts and connection errors are retryable
(honouring Retry-After); any other status is permanent. The service's own error text is
kept in the DeliveryError so it reaches history.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx
import msgspec
from msgspec import UNSET, Struct, UnsetType

from engine.connector import Delivered, SendEnv
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
    text = response.text.strip()
    return text[:MAX_ERROR_TEXT] if text else response.reason_phrase


async def send_http(request: HttpRequest, env: SendEnv, connector: str) -> httpx.Response:
    """Send `request`; return the response when its status is expected, else raise."""
    headers = dict(request.headers)
    if env.idempotency_key:
        headers.setdefault("Idempotency-Key", env.idempotency_key)
    kwargs: dict[str, Any] = {}
    if request.json is not UNSET:
        kwargs["content"] = msgspec.json.encode(request.json)
        headers.setdefault("Content-Type", "application/json")
    elif request.form is not UNSET:
        kwargs["data"] = request.form
    elif request.body is not UNSET:
        kwargs["content"] = request.body.encode()
    await env.guard(request.url)
    try:
        response = await env.client.request(
            request.method,
            request.url,
            params=request.query or None,
            headers=headers,
            timeout=request.timeout,
            **kwargs,
        )
    except httpx.TimeoutException as exc:
        raise DeliveryError(
            f"timed out after {request.timeout:g}s ({type(exc).__name__})",
            connector=connector,
            url=request.url,
            retryable=True,
        ) from None
    except httpx.TransportError as exc:
        raise DeliveryError(
            f"{type(exc).__name__}: {exc}", connector=connector, url=request.url, retryable=True
        ) from None
    expected = request.expect_status
    ok = response.status_code in expected if expected else response.is_success
    if ok:
        return response
    raise DeliveryError(
        error_text(response),
        connector=connector,
        status=response.status_code,
        url=request.url,
        retryable=response.status_code in RETRYABLE_STATUS,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


def delivered(response: httpx.Response) -> Delivered:
    return Delivered(status=response.status_code, response=response.text[:MAX_ERROR_TEXT])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
