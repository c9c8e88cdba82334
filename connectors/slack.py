"""Slack: an incoming webhook, or a bot token with chat.postMessage.

An incoming webhook answers `ok` as text, or an HTTP error whose body is the error name
(`invalid_payload`, `no_service`...). chat.postMessage answers JSON: `{"ok": true, ...}`,
or `{"ok": false, "error": "channel_not_found"}`, often with HTTP 200. Both answer 429 with
Retry-After when rate limited.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from msgspec import Struct

from connectors.http_kit import (
    MAX_ERROR_TEXT,
    HttpDestination,
    HttpRequest,
    bearer,
    delivered,
    error_text,
    json_answer,
    probe_http,
    retry_after_seconds,
    send_http,
)
from engine.connector import ConnectorBase, Delivered, Probe, RenderEnv, SendEnv
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


class Slack(HttpDestination, ConnectorBase[SlackOptions, HttpRequest]):
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
        payload: dict[str, Any] = {}
        if options.text or not options.blocks:  # with blocks, text is only the fallback
            payload["text"] = options.text
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
        response = await send_http(request, env, self.name, describe=slack_error)
        if not request.url.endswith("/chat.postMessage"):
            return delivered(response)
        answer = json_answer(response)
        if isinstance(answer, dict) and answer.get("ok") is True:
            return delivered(response)
        error = answer.get("error") if isinstance(answer, dict) else None
        raise DeliveryError(
            slack_error(response) if error else f"not a Slack API answer: {error_text(response)}",
            connector=self.name,
            status=response.status_code,
            url=request.url,
            retryable=error in RETRYABLE_API_ERRORS,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    async def probe(self, options: SlackOptions, env: SendEnv) -> Probe:
        """Posts "omi-rules test" where the rule posts (webhook, or token and channel)."""
        test = msgspec.structs.replace(options, text=PROBE_TEXT, blocks=None, thread_ts=None)
        request = self.render(test, RenderEnv(secret=env.secret, has_secret=lambda name: False))
        if request.url.endswith("/chat.postMessage"):
            try:
                await self.send(request, env)
            except DeliveryError as exc:
                return Probe(ok=False, status=exc.status, answer=exc.message)
            return Probe(ok=True, status=200, answer="ok")
        return await probe_http(request, env, self.name, describe=slack_error)


PROBE_TEXT = "omi-rules test: this Slack connection works"


def slack_error(response: httpx.Response) -> str:
    """Slack's error name, with the details chat.postMessage adds for bad blocks."""
    answer = json_answer(response)
    if not isinstance(answer, dict) or not answer.get("error"):
        return error_text(response)  # an incoming webhook's plain-text error
    message = str(answer["error"])
    details = (answer.get("response_metadata") or {}).get("messages") or []
    if details:
        message += ": " + "; ".join(str(item) for item in details)
    return message[:MAX_ERROR_TEXT]


connector = Slack()
