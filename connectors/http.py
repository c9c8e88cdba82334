"""Any HTTP request: IFTTT, Zapier and n8n hooks, smart-home hubs, your own service."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType

from connectors.http_kit import HttpDestination, HttpRequest, delivered, send_http
from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class HttpOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    url: str
    method: Method = "POST"
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    json: Any | UnsetType = UNSET
    form: dict[str, str] | UnsetType = UNSET
    body: str | UnsetType = UNSET
    timeout: float = 15.0
    expect_status: int | list[int] | None = None


class Http(HttpDestination, ConnectorBase[HttpOptions, HttpRequest]):
    name = "http"
    summary = "Send any HTTP request (json, form or raw body)"
    Options = HttpOptions
    Request = HttpRequest

    def validate(self, options: HttpOptions) -> list[tuple[str, str]]:
        given = [name for name in ("json", "form", "body") if getattr(options, name) is not UNSET]
        if len(given) > 1:
            return [(given[1], f"give one of json, form, body (got {', '.join(given)})")]
        if not 0 < options.timeout <= 300:
            return [("timeout", "timeout must be between 0 and 300 seconds")]
        return []

    def render(self, options: HttpOptions, env: RenderEnv) -> HttpRequest:
        expect = options.expect_status
        headers = {str(k): str(v) for k, v in options.headers.items()}
        for name, value in headers.items():
            if any(c in value for c in "\r\n\0"):  # templated text must not add headers
                raise ValueError(f"header {name}: value {value!r} has a line break")
        return HttpRequest(
            method=options.method,
            url=options.url,
            headers=headers,
            query={str(k): str(v) for k, v in options.query.items()},
            json=options.json,
            form=options.form,
            body=options.body,
            timeout=options.timeout,
            expect_status=[expect] if isinstance(expect, int) else list(expect or []),
        )

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        return delivered(await send_http(request, env, self.name))


connector = Http()
