"""Notify: text Omi shows the user, returned in the webhook response as {"message": ...}.

For a memory webhook it becomes the app's message to the user; for a transcript webhook
(over 5 characters) a push notification. Nothing is sent later: it rides in the response.
"""

from __future__ import annotations

from msgspec import Struct

from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.rules.templates import is_template
from engine.triggers import default_triggers

MIN_PUSH_LENGTH = 6  # Omi pushes a transcript answer only when longer than 5 characters


class NotifyOptions(Struct, forbid_unknown_fields=True):
    message: str


class NotifyRequest(Struct):
    message: str


class Notify(ConnectorBase[NotifyOptions, NotifyRequest]):
    name = "notify"
    summary = "Answer Omi with a message shown to the user (in the webhook response)"
    Options = NotifyOptions
    Request = NotifyRequest
    inline = True

    def advise(self, options: NotifyOptions, trigger: str) -> list[tuple[str, str]]:
        if not default_triggers()[trigger].answer_read_by_omi:
            return [
                (
                    "message",
                    f"Omi does not read the answer to a {trigger} webhook, so this message is "
                    "never shown (only memory and transcript answers are)",
                )
            ]
        text = options.message.strip()
        if not is_template(text) and len(text) < MIN_PUSH_LENGTH:
            return [
                (
                    "message",
                    f"{text!r} is under {MIN_PUSH_LENGTH} characters: Omi sends a transcript "
                    "answer as a push notification only when it is longer",
                )
            ]
        return []

    def render(self, options: NotifyOptions, env: RenderEnv) -> NotifyRequest:
        return NotifyRequest(options.message.strip())

    def inline_reply(self, request: NotifyRequest) -> str | None:
        return request.message

    async def send(self, request: NotifyRequest, env: SendEnv) -> Delivered:
        return Delivered(status=200, response="returned in the webhook response")


connector = Notify()
