"""Slack: an incoming webhook, or a bot token with chat.postMessage."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from connectors._http import HttpRequest, bearer, delivered, send_http
from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.errors import DeliveryError

# chat.postMessage answers 200 with ok: false; these errors are worth retrying
RETRYABLE_API_ERRORS = frozenset(
    {"ratelimited", "internal_error", "service_unavailable", "request_timeout", "fatal_error"}
)


class SlackOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    text: str = ""
    webhook_url: str | None = None
    token: str | None = None
    channel: str | None = None
    blocks: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    api_url: str = "https://slack.com/api"
    timeout: float = 10.0


class Slack(ConnectorBase):
    name = "slack"
    summary = "Post a message to Slack (incoming webhook, or bot token + channel)"
    Options = SlackOptions
    Request = HttpRequest

    def validate(self, options: SlackOptions) -> list[tuple[str, str]]:
        if options.webhook_url and (options.token or options.channel):
            return [("webhook_url", "give webhook_url, or token and channel, not both")]
        if not options.webhook_url and not (options.token and options.channel):
            return [("", "give webhook_url, or token and channel")]
        if not options.text and not options.blocks:
            return [("", "give text or blocks")]
        return []

    def render(self, options: SlackOptions, env: RenderEnv) -> HttpRequest:
        payload: dict[str, Any] = {"text": options.text}
        if options.blocks is not None:
            payload["blocks"] = options.blocks
        if options.thread_ts:
            payload["thread_ts"] = options.thread_ts
        if options.webhook_url:
            return HttpRequest("POST", options.webhook_url, json=payload, timeout=options.timeout)
        if not (options.token and options.channel):
            raise ValueError("slack needs webhook_url, or token and channel")
        payload = {"channel": options.channel, **payload}
        headers = {**bearer(options.token), "Content-Type": "application/json; charset=utf-8"}
        url = options.api_url.rstrip("/") + "/chat.postMessage"
        return HttpRequest("POST", url, headers=headers, json=payload, timeout=options.timeout)

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        response = await send_http(request, env, self.name)
        if request.url.endswith("/chat.postMessage"):
            try:
                answer = msgspec.json.decode(response.content)
            except msgspec.DecodeError:
                answer = {}
            if not isinstance(answer, dict) or not answer.get("ok"):
                error = (
                    answer.get("error", "no ok in answer")
                    if isinstance(answer, dict)
                    else "bad answer"
                )
                raise DeliveryError(
                    f"Slack API error: {error}",
                    connector=self.name,
                    status=response.status_code,
                    url=request.url,
                    retryable=error in RETRYABLE_API_ERRORS,
                )
        return delivered(response)


connector = Slack()
