"""Email over SMTP (STARTTLS, SSL or plain), text and/or HTML (multipart/alternative).

The server comes from secrets: SMTP_HOST, SMTP_PORT, SMTP_SECURITY (starttls | ssl | none,
default starttls), SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_CA_FILE. Templated header
values are folded onto one line, so a newline in a rendered subject cannot add headers.
Bcc recipients are in the envelope only, never in the headers.

A 4xx answer (greylisting, mailbox busy) and a dropped connection are retryable; a 5xx
answer, refused login, a server without STARTTLS or AUTH, and a certificate that does not
verify are permanent: sending again cannot fix them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from email.utils import formataddr, formatdate, getaddresses, make_msgid

import msgspec
from msgspec import Struct

from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.errors import DeliveryError, SecretError
from engine.secrets import placeholder_name

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_LINE_BREAKS = re.compile(r"[\r\n\x00\u2028\u2029\x85]+")
_ADDRESS = re.compile(r"[^@\s<>,;:\"]+@[^@\s<>,;:\"]+")


class EmailOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    to: str | list[str]
    subject: str = ""
    text: str | None = None
    html: str | None = None
    cc: str | list[str] | None = None
    bcc: str | list[str] | None = None
    reply_to: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    timeout: float = 20.0


class EmailRequest(Struct, omit_defaults=True):
    host: str
    port: int
    security: str
    mail_from: str
    rcpt_to: list[str]
    message: str  # the MIME text, 7-bit clean; Date and Message-ID are added when sent
    timeout: float = 20.0


def one_line(value: str) -> str:
    """A header value that cannot start another header."""
    return _LINE_BREAKS.sub(" ", value).strip()


def _stand_in(item: str) -> str:
    """Dry-run renders an unset secret as <secret:NAME>; keep it an address."""
    name = placeholder_name(item)
    return f"{name}@unset-secret.invalid" if name else item


def mailboxes(value: str | list[str] | None) -> list[tuple[str, str]]:
    """(display name, address) per recipient; commas and line breaks separate them.

    One template may render to "a@x, b@y" or one address a line. Each address must be
    local@domain, so text that is not an address list fails here instead of reaching the
    SMTP envelope as a made-up recipient.
    """
    items = [value] if isinstance(value, str) else list(value or [])
    texts = [_LINE_BREAKS.sub(", ", _stand_in(item)) for item in items]
    result = [(one_line(name), addr) for name, addr in getaddresses(texts) if addr]
    for _name, addr in result:
        if not _ADDRESS.fullmatch(addr):
            raise ValueError(f"{addr!r} is not an email address (in {', '.join(texts)!r})")
    return result


def addresses(value: str | list[str] | None) -> list[str]:
    return [addr for _name, addr in mailboxes(value)]


def _format(value: str | list[str] | None) -> str:
    return ", ".join(formataddr(pair) for pair in mailboxes(value))


def _single(value: str, option: str) -> str:
    """A From or Reply-To value: exactly one mailbox."""
    found = mailboxes(one_line(value))
    if len(found) != 1:
        raise ValueError(f"{option} {value!r} is not one email address")
    return formataddr(found[0])


class Email(ConnectorBase[EmailOptions, EmailRequest]):
    name = "email"
    summary = "Send an email through the SMTP server set in secrets (SMTP_HOST, ...)"
    Options = EmailOptions
    Request = EmailRequest
    autoescape_fields = frozenset({"html"})

    def validate(self, options: EmailOptions) -> list[tuple[str, str]]:
        if options.text is None and options.html is None:
            return [("", "give text or html (or both)")]
        return []

    def required_secrets(self, options: EmailOptions) -> set[str]:
        return {"SMTP_HOST"} | (set() if options.from_ else {"SMTP_FROM"})

    def render(self, options: EmailOptions, env: RenderEnv) -> EmailRequest:
        security = env.secret("SMTP_SECURITY") if env.has_secret("SMTP_SECURITY") else "starttls"
        security = security.lower()
        if security not in DEFAULT_PORTS:
            raise ValueError(f"SMTP_SECURITY {security!r} is not starttls, ssl or none")
        port = _port(env.secret("SMTP_PORT")) if env.has_secret("SMTP_PORT") else None
        port = port or DEFAULT_PORTS[security]
        sender = _single(options.from_ or env.secret("SMTP_FROM"), "from")
        to, cc, bcc = addresses(options.to), addresses(options.cc), addresses(options.bcc)
        if not to:
            raise ValueError(f"no recipient address in to: {options.to!r}")
        message = EmailMessage(policy=DEFAULT_POLICY)
        message["From"] = sender
        message["To"] = _format(options.to)
        if cc:
            message["Cc"] = _format(options.cc)
        if options.reply_to:
            message["Reply-To"] = _single(options.reply_to, "reply_to")
        message["Subject"] = one_line(options.subject)
        if options.text is not None:
            message.set_content(options.text)
        if options.html is not None:
            if options.text is not None:
                message.add_alternative(options.html, subtype="html")
            else:
                message.set_content(options.html, subtype="html")
        if message.is_multipart():  # a stable boundary: dry-run shows what is sent, byte for byte
            message.set_boundary("omi-rules")  # replace the random one before hashing
            digest = hashlib.sha256(message.as_string().encode()).hexdigest()[:24]
            message.set_boundary(f"omi-rules-{digest}")
        envelope_from = addresses(sender)[0]
        return EmailRequest(
            host=env.secret("SMTP_HOST"),
            port=port,
            security=security,
            mail_from=envelope_from,
            rcpt_to=list(dict.fromkeys(to + cc + bcc)),  # one copy each
            message=message.as_string(),
            timeout=options.timeout,
        )

    def destination(self, request: EmailRequest) -> str | None:
        return f"smtp://{request.host}:{request.port}"

    def deadline(self, request: EmailRequest) -> float | None:
        return request.timeout

    def describe(self, request: EmailRequest) -> str:
        head = f"SMTP {request.host}:{request.port} ({request.security})"
        envelope = f"MAIL FROM {request.mail_from} RCPT TO {', '.join(request.rcpt_to)}"
        return "\n".join([head, envelope, "", *request.message.rstrip("\n").splitlines()])

    async def send(self, request: EmailRequest, env: SendEnv) -> Delivered:
        return await asyncio.to_thread(self._send_blocking, request, env)

    def _send_blocking(self, request: EmailRequest, env: SendEnv) -> Delivered:
        headers = f"Date: {formatdate(localtime=True)}\r\n"
        domain = request.mail_from.rpartition("@")[2] or "omi-rules.local"
        key = (
            re.sub(r"[^\w.-]", "-", env.idempotency_key, flags=re.ASCII)
            if env.idempotency_key
            else None
        )
        headers += f"Message-ID: {make_msgid(idstring=key, domain=domain)}\r\n"
        body = (headers + request.message.replace("\r\n", "\n").replace("\n", "\r\n")).encode()
        where = f"smtp://{request.host}:{request.port}"
        try:
            refused = self._transmit(request, env, body)
        except smtplib.SMTPResponseException as exc:  # the server answered with an error code
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}",
                connector=self.name,
                status=exc.smtp_code,
                url=where,
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            codes = [code for code, _text_ in exc.recipients.values()]
            raise DeliveryError(
                f"recipients refused: {_refusals(exc.recipients)}",
                connector=self.name,
                status=max(codes, default=None),
                url=where,
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or AUTH on offer
            raise DeliveryError(
                f"{exc} (check SMTP_SECURITY and SMTP_PORT)", connector=self.name, url=where
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"TLS certificate not trusted: {exc.verify_message} (SMTP_CA_FILE names a CA file)",
                connector=self.name,
                url=where,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out
            raise DeliveryError(
                f"{type(exc).__name__}: {exc}", connector=self.name, url=where, retryable=True
            ) from None
        if refused:
            return Delivered(status=250, response=f"accepted, but refused {_refusals(refused)}")
        return Delivered(status=250, response=f"accepted for {len(request.rcpt_to)} recipient(s)")

    def _transmit(
        self, request: EmailRequest, env: SendEnv, body: bytes
    ) -> dict[str, tuple[int, bytes]]:
        """One SMTP session: connect, secure, log in, send; the refused recipients."""
        context = ssl.create_default_context(cafile=_optional(env, "SMTP_CA_FILE"))
        username, password = _optional(env, "SMTP_USERNAME"), _optional(env, "SMTP_PASSWORD")
        if request.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                request.host, request.port, timeout=request.timeout, context=context
            )
        else:
            client = smtplib.SMTP(request.host, request.port, timeout=request.timeout)
        with client:
            if request.security == "starttls":
                client.starttls(context=context)
            if username and password:
                client.login(username, password)
            return client.sendmail(request.mail_from, request.rcpt_to, body)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"SMTP_PORT {value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"SMTP_PORT {port} is not a port number")
    return port


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in recipients.items())


def _optional(env: SendEnv, name: str) -> str | None:
    try:
        return env.secret(name)
    except SecretError:  # an optional secret that is not set
        return None


connector = Email()
