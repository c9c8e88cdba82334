"""A real SMTP server for tests: aiosmtpd on an ephemeral loopback port, recording what it
receives, with logins and scripted refusals."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "omi-bot", "s3cret-pass"


@dataclass
class Mailbox:
    """What the SMTP server saw: envelopes, parsed messages, logins, and scripted refusals."""

    envelopes: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    tls_sessions: list[bool] = field(default_factory=list)
    rcpt_answer: dict[str, str] = field(default_factory=dict)  # address -> "550 ..."
    data_answer: str = "250 Message accepted for delivery"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address in self.rcpt_answer:
            return self.rcpt_answer[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_answer.startswith("250"):
            content = envelope.original_content or b""
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), content))
            self.tls_sessions.append(session.ssl is not None)
        return self.data_answer

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        # handled=False: aiosmtpd answers 535 itself when the credentials are wrong
        return AuthResult(success=(login, password) == (USER, PASSWORD), handled=False)

    def message(self, index: int = -1) -> email.message.EmailMessage:
        """The message as a recipient parses it (line ends as on the wire, CRLF)."""
        raw = self.envelopes[index][2]
        return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def body(part: email.message.EmailMessage) -> str:
    """A text part's content with the wire's CRLF line ends made plain newlines."""
    return part.get_content().replace("\r\n", "\n")


class LoopbackController(Controller):
    """aiosmtpd's Controller on an ephemeral port (it pokes its own port once started)."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def run_server(mailbox: Mailbox, **kwargs: Any) -> Iterator[LoopbackController]:
    controller = LoopbackController(mailbox, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
