"""Home Assistant: call a service (`light.turn_on`) or fire an event, with a long-lived token.

`POST <url>/api/services/<domain>/<service>` or `POST <url>/api/events/<event type>`, the
data as the JSON body. Home Assistant's errors are `{"message": ...}` (or plain text for
401), and that text is what the DeliveryError says.
"""

from __future__ import annotations

import re
from typing import Any

from msgspec import Struct

from connectors.http_kit import (
    HttpDestination,
    HttpRequest,
    bearer,
    delivered,
    json_message,
    probe_http,
    send_http,
)
from engine.connector import ConnectorBase, Delivered, Probe, RenderEnv, SendEnv

_SERVICE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
_EVENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class HomeAssistantOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    url: str
    token: str
    service: str | None = None
    event: str | None = None
    data: dict[str, Any] = {}
    timeout: float = 10.0


class HomeAssistant(HttpDestination, ConnectorBase[HomeAssistantOptions, HttpRequest]):
    name = "home_assistant"
    summary = "Call a Home Assistant service (domain.service) or fire an event"
    Options = HomeAssistantOptions
    Request = HttpRequest

    def validate(self, options: HomeAssistantOptions) -> list[tuple[str, str]]:
        if bool(options.service) == bool(options.event):
            return [("", "give service (like light.turn_on) or event, exactly one")]
        if options.service and "{" not in options.service and not _SERVICE.match(options.service):
            return [("service", f"service {options.service!r} is not domain.service")]
        return []

    def render(self, options: HomeAssistantOptions, env: RenderEnv) -> HttpRequest:
        base = options.url.rstrip("/")
        if options.service:
            if not _SERVICE.match(options.service):
                raise ValueError(f"service {options.service!r} is not domain.service")
            domain, service = options.service.split(".")
            url = f"{base}/api/services/{domain}/{service}"
        else:
            if not _EVENT.match(options.event or ""):
                raise ValueError(f"event type {options.event!r} has characters a URL path refuses")
            url = f"{base}/api/events/{options.event}"
        headers = {**bearer(options.token), "Content-Type": "application/json"}
        return HttpRequest("POST", url, headers=headers, json=options.data, timeout=options.timeout)

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        return delivered(await send_http(request, env, self.name, describe=json_message))

    async def probe(self, options: HomeAssistantOptions, env: SendEnv) -> Probe:
        """`GET <url>/api/`: Home Assistant answers {"message": "API running."}."""
        url = options.url.rstrip("/") + "/api/"
        request = HttpRequest("GET", url, headers=bearer(options.token), timeout=options.timeout)
        return await probe_http(request, env, self.name, describe=json_message)


connector = HomeAssistant()
