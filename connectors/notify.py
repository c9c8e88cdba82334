"""Notify: text Omi shows the user, returned in the webhook response as {"message": ...}.

For a memory webhook it becomes the app's message to the user; for a transcript webhook
(over 5 characters) a push notification. Nothing is sent later: it rides in the response.
"""

from __future__ import annotations

from msgspec import Struct

from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv


class NotifyOptions(Struct, forbid_unknown_fields=True):
    message: str


class NotifyRequest(Struct):
    message: str


class Notify(ConnectorBase):
    name = "notify"
    summary = "Answer Omi with a message shown to the user (in the webhook response)"
    Options = NotifyOptions
    Request = NotifyRequest
    inline = True

    def render(self, options: NotifyOptions, env: RenderEnv) -> NotifyRequest:
        return NotifyRequest(options.message.strip())

    async def send(self, request: NotifyRequest, env: SendEnv) -> Delivered:
        return Delivered(status=200, response="returned in the webhook response")


connector = Notify()
