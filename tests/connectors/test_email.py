"""Email against a real SMTP server (aiosmtpd) on loopback: STARTTLS and SSL with a test
CA (trustme), AUTH LOGIN, MIME as the recipient parses it, and SMTP's error codes."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from connectors.email import connector as mailer
from engine.errors import DeliveryError
from tests.connectors.helpers import closed_port, render, send
from tests.smtp_server import PASSWORD, USER, LoopbackController, Mailbox, body, run_server


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def starttls_server(mailbox: Mailbox, server_tls: ssl.SSLContext) -> Iterator[LoopbackController]:
    """Submission as on port 587: STARTTLS required, then AUTH LOGIN/PLAIN required."""
    yield from run_server(
        mailbox,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=mailbox.authenticate,
        auth_required=True,
    )


@pytest.fixture
def ssl_server(mailbox: Mailbox, server_tls: ssl.SSLContext) -> Iterator[LoopbackController]:
    """Implicit TLS as on port 465 (the whole connection is TLS, so AUTH is safe)."""
    yield from run_server(
        mailbox,
        ssl_context=server_tls,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,
    )


@pytest.fixture
def plain_server(mailbox: Mailbox) -> Iterator[LoopbackController]:
    """A relay without TLS or AUTH, as a home network's relay on port 25."""
    yield from run_server(mailbox)


def smtp_secrets(server: LoopbackController, security: str, **extra: str) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(server.port),
        "SMTP_SECURITY": security,
        "SMTP_FROM": "Omi Rules <rules@example.com>",
        **extra,
    }


def deliver(options: dict[str, Any], secrets: dict[str, str], key: str = "") -> Any:
    request = render(mailer, options, secrets=secrets)
    return send(mailer, request, secrets=secrets, idempotency_key=key)


FULL = {
    "to": ["Dana <dana@example.com>", "lee@example.com"],
    "cc": "ops@example.com",
    "bcc": ["audit@example.com", "boss@example.com"],
    "reply_to": "team@example.com",
    "subject": "Launch review ☕",
    "text": "Action items:\n- Ship the beta\n- Email Dana\n",
    "html": "<p>Action items:</p><ul><li>Ship the beta</li><li>Email Dana</li></ul>",
}


def test_starttls_login_and_a_multipart_message(
    starttls_server: LoopbackController, mailbox: Mailbox, ca_file: str
) -> None:
    secrets = smtp_secrets(
        starttls_server,
        "starttls",
        SMTP_USERNAME=USER,
        SMTP_PASSWORD=PASSWORD,
        SMTP_CA_FILE=ca_file,
    )
    delivered = deliver(FULL, secrets, key="evt-1:work-to-mail:0:é")

    assert delivered.status == 250
    assert delivered.response == "accepted for 5 recipient(s)"
    assert mailbox.logins == [(USER, PASSWORD)]
    assert mailbox.tls_sessions == [True]
    mail_from, rcpt_tos, raw = mailbox.envelopes[0]
    assert mail_from == "rules@example.com"
    assert rcpt_tos == [
        "dana@example.com",
        "lee@example.com",
        "ops@example.com",
        "audit@example.com",
        "boss@example.com",
    ]

    message = mailbox.message()
    assert message["From"] == "Omi Rules <rules@example.com>"
    assert message["To"] == "Dana <dana@example.com>, lee@example.com"
    assert message["Cc"] == "ops@example.com"
    assert message["Reply-To"] == "team@example.com"
    assert message["Subject"] == "Launch review ☕"
    assert message["Bcc"] is None
    assert b"audit@example.com" not in raw and b"boss@example.com" not in raw
    assert message["Date"] is not None
    assert "evt-1-work-to-mail-0--" in message["Message-ID"]
    assert raw.isascii()
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert body(text) == FULL["text"]
    assert html.get_content_type() == "text/html"
    assert body(html).strip() == FULL["html"]


def test_ssl_and_login(ssl_server: LoopbackController, mailbox: Mailbox, ca_file: str) -> None:
    secrets = smtp_secrets(
        ssl_server, "ssl", SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD, SMTP_CA_FILE=ca_file
    )
    deliver({"to": "dana@example.com", "subject": "Hi", "text": "Über gut ✓"}, secrets)

    assert mailbox.logins == [(USER, PASSWORD)]
    message = mailbox.message()
    assert message.get_content_type() == "text/plain"
    assert body(message) == "Über gut ✓\n"
    assert mailbox.envelopes[0][2].isascii()  # non-ASCII text travels encoded
    assert mailbox.envelopes[0][1] == ["dana@example.com"]


def test_html_only_and_plain_relay(plain_server: LoopbackController, mailbox: Mailbox) -> None:
    secrets = smtp_secrets(plain_server, "none")
    deliver({"to": "a@example.com, b@example.com", "html": "<b>bold</b>"}, secrets)

    message = mailbox.message()
    assert message.get_content_type() == "text/html"
    assert body(message).strip() == "<b>bold</b>"
    assert mailbox.envelopes[0][1] == ["a@example.com", "b@example.com"]
    assert mailbox.tls_sessions == [False]


def test_a_newline_in_a_templated_header_cannot_add_headers(
    plain_server: LoopbackController, mailbox: Mailbox
) -> None:
    secrets = smtp_secrets(plain_server, "none")
    options = {
        "to": "dana@example.com",
        "subject": "Hello\r\nBcc: evil@attacker.example\r\nX-Injected: yes",
        "reply_to": "Team\r\nX-Other: 1 <team@example.com>",
        "text": "hi",
    }
    deliver(options, secrets)

    _from, rcpt_tos, _raw = mailbox.envelopes[0]
    assert rcpt_tos == ["dana@example.com"]
    message = mailbox.message()
    assert message["Bcc"] is None
    assert message["X-Injected"] is None and message["X-Other"] is None
    assert message["Subject"] == "Hello Bcc: evil@attacker.example X-Injected: yes"
    assert message["Reply-To"].addresses[0].addr_spec == "team@example.com"
    assert body(message) == "hi\n"


def test_a_recipient_list_may_be_one_address_a_line(
    plain_server: LoopbackController, mailbox: Mailbox
) -> None:
    """A template that renders one address a line: each line is a visible recipient."""
    options = {"to": "dana@example.com\nlee@example.com\r\n", "text": "hi"}
    deliver(options, smtp_secrets(plain_server, "none"))
    assert mailbox.envelopes[0][1] == ["dana@example.com", "lee@example.com"]
    assert mailbox.message()["To"] == "dana@example.com, lee@example.com"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"to": "see the notes"},
            "'see' is not an email address (in 'see the notes')",
        ),
        (
            {"to": "d@example.com", "from": "Omi <rules@example.com>\n\nbody starts here"},
            "'body' is not an email address (in 'Omi <rules@example.com> body starts here')",
        ),
        (
            {"to": "d@example.com", "reply_to": "a@example.com, b@example.com"},
            "reply_to 'a@example.com, b@example.com' is not one email address",
        ),
        ({"to": "", "cc": "d@example.com"}, "no recipient address in to: ''"),
    ],
)
def test_text_that_is_not_an_address_fails_at_render(options: dict[str, str], message: str) -> None:
    secrets = {"SMTP_HOST": "127.0.0.1", "SMTP_FROM": "rules@example.com"}
    with pytest.raises(ValueError) as caught:
        render(mailer, {**options, "text": "hi"}, secrets=secrets)
    assert str(caught.value) == message


def test_duplicate_recipients_get_one_copy(
    plain_server: LoopbackController, mailbox: Mailbox
) -> None:
    options = {"to": "dana@example.com", "cc": "dana@example.com", "text": "once"}
    deliver(options, smtp_secrets(plain_server, "none"))
    assert mailbox.envelopes[0][1] == ["dana@example.com"]


def test_a_5xx_answer_is_permanent(plain_server: LoopbackController, mailbox: Mailbox) -> None:
    mailbox.data_answer = "554 5.7.1 Message rejected as spam"
    with pytest.raises(DeliveryError) as caught:
        deliver({"to": "dana@example.com", "text": "hi"}, smtp_secrets(plain_server, "none"))
    error = caught.value
    assert error.message == "SMTP 554: 5.7.1 Message rejected as spam"
    assert error.status == 554
    assert error.retryable is False
    assert error.connector == "email"
    assert error.url == f"smtp://127.0.0.1:{plain_server.port}"


def test_a_4xx_answer_is_retryable(plain_server: LoopbackController, mailbox: Mailbox) -> None:
    mailbox.data_answer = "451 4.3.0 Mail server temporarily rejected message"
    with pytest.raises(DeliveryError) as caught:
        deliver({"to": "dana@example.com", "text": "hi"}, smtp_secrets(plain_server, "none"))
    assert caught.value.message == "SMTP 451: 4.3.0 Mail server temporarily rejected message"
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [("550 5.1.1 No such user", False), ("450 4.2.1 Mailbox busy, try later", True)],
)
def test_refused_recipients(
    plain_server: LoopbackController, mailbox: Mailbox, answer: str, retryable: bool
) -> None:
    mailbox.rcpt_answer["ghost@example.com"] = answer
    with pytest.raises(DeliveryError) as caught:
        deliver({"to": "ghost@example.com", "text": "hi"}, smtp_secrets(plain_server, "none"))
    code, _, text = answer.partition(" ")
    assert caught.value.message == f"recipients refused: ghost@example.com: {code} {text}"
    assert caught.value.status == int(code)
    assert caught.value.retryable is retryable


def test_one_refused_recipient_does_not_stop_the_others(
    plain_server: LoopbackController, mailbox: Mailbox
) -> None:
    mailbox.rcpt_answer["ghost@example.com"] = "550 5.1.1 No such user"
    options = {"to": ["dana@example.com", "ghost@example.com"], "text": "hi"}
    delivered = deliver(options, smtp_secrets(plain_server, "none"))
    assert delivered.response == ("accepted, but refused ghost@example.com: 550 5.1.1 No such user")
    assert mailbox.envelopes[0][1] == ["dana@example.com"]


def test_a_wrong_password_is_permanent(
    starttls_server: LoopbackController, mailbox: Mailbox, ca_file: str
) -> None:
    secrets = smtp_secrets(
        starttls_server, "starttls", SMTP_USERNAME=USER, SMTP_PASSWORD="wrong", SMTP_CA_FILE=ca_file
    )
    with pytest.raises(DeliveryError) as caught:
        deliver({"to": "dana@example.com", "text": "hi"}, secrets)
    assert caught.value.status == 535
    assert "Authentication credentials invalid" in caught.value.message
    assert caught.value.retryable is False
    assert mailbox.envelopes == []


def test_starttls_against_a_server_without_it_is_permanent(
    plain_server: LoopbackController,
) -> None:
    with pytest.raises(DeliveryError) as caught:
        deliver({"to": "d@example.com", "text": "hi"}, smtp_secrets(plain_server, "starttls"))
    assert caught.value.message == (
        "STARTTLS extension not supported by server. (check SMTP_SECURITY and SMTP_PORT)"
    )
    assert caught.value.retryable is False


def test_an_untrusted_certificate_is_permanent(
    starttls_server: LoopbackController, mailbox: Mailbox
) -> None:
    secrets = smtp_secrets(starttls_server, "starttls", SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD)
    with pytest.raises(DeliveryError) as caught:  # no SMTP_CA_FILE: the test CA is unknown
        deliver({"to": "dana@example.com", "text": "hi"}, secrets)
    assert caught.value.message.startswith("TLS certificate not trusted:")
    assert caught.value.retryable is False
    assert mailbox.logins == []


def test_a_closed_port_is_retryable() -> None:
    secrets = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(closed_port()), "SMTP_SECURITY": "none"}
    with pytest.raises(DeliveryError) as caught:
        deliver({"to": "d@example.com", "from": "me@example.com", "text": "hi"}, secrets)
    assert caught.value.retryable is True
    assert "ConnectionRefusedError" in caught.value.message


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({"SMTP_SECURITY": "tls"}, "SMTP_SECURITY 'tls' is not starttls, ssl or none"),
        ({"SMTP_PORT": "smtp"}, "SMTP_PORT 'smtp' is not a port number"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT 70000 is not a port number"),
    ],
)
def test_bad_smtp_settings_are_named(secrets: dict[str, str], message: str) -> None:
    all_secrets = {"SMTP_HOST": "127.0.0.1", "SMTP_FROM": "me@example.com", **secrets}
    with pytest.raises(ValueError) as caught:
        render(mailer, {"to": "d@example.com", "text": "hi"}, secrets=all_secrets)
    assert str(caught.value) == message


def test_default_ports_follow_security() -> None:
    for security, port in [("starttls", 587), ("ssl", 465), ("none", 25)]:
        secrets = {"SMTP_HOST": "mail.example.com", "SMTP_FROM": "a@b.c", "SMTP_SECURITY": security}
        request = render(mailer, {"to": "d@example.com", "text": "hi"}, secrets=secrets)
        assert (request.port, request.security) == (port, security)
