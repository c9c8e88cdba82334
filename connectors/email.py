"""Email over SMTP (STARTTLS, SSL or plain), text and/or HTML (multipart/alternative).

The server comes from secrets: SMTP_HOST, SMTP_PORT, SMTP_SECURITY (starttls | ssl | none,
default starttls), SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM, SMTP_CA_FILE. Templated header
values are folded onto one line, so a newline in a rendered subject cannot add headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from email.utils import formatdate, getaddresses, make_msgid

import msgspec
from msgspec import Struct

from engine.connector import ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.errors import DeliveryError, SecretError
from engine.secrets import placeholder_name

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
_LINE_BREAKS = re.compile(r"[\r\n\x00\u2028\u2029\x85]+")


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
    message: str  # the MIME text; Date and Message-ID are added when sent
    timeout: float = 20.0


def one_line(value: str) -> str:
    """A header value that cannot start another header."""
    return _LINE_BREAKS.sub(" ", value).strip()


def _stand_in(item: str) -> str:
    """Dry-run renders an unset secret as <secret:NAME>; keep it an address."""
    name = placeholder_name(item)
    return f"{name}@unset-secret.invalid" if name else item


def addresses(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    items = [_stand_in(value)] if isinstance(value, str) else [_stand_in(v) for v in value]
    # one template may render to "a@x, b@y": split it
    parsed = getaddresses([one_line(item) for item in items])
    return [addr for _name, addr in parsed if addr]


def _format(value: str | list[str] | None) -> str:
    items = [value] if isinstance(value, str) else (value or [])
    return ", ".join(one_line(_stand_in(item)) for item in items if item.strip())


class Email(ConnectorBase):
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
        port = (
            int(env.secret("SMTP_PORT")) if env.has_secret("SMTP_PORT") else DEFAULT_PORTS[security]
        )
        sender = one_line(_stand_in(options.from_ or env.secret("SMTP_FROM")))
        to, cc, bcc = addresses(options.to), addresses(options.cc), addresses(options.bcc)
        if not to:
            raise ValueError(f"no recipient address in to: {options.to!r}")
        message = EmailMessage(policy=DEFAULT_POLICY)
        message["From"] = sender
        message["To"] = _format(options.to)
        if cc:
            message["Cc"] = _format(options.cc)
        if options.reply_to:
            message["Reply-To"] = one_line(options.reply_to)
        message["Subject"] = one_line(options.subject)
        if options.text is not None:
            message.set_content(options.text)
        if options.html is not None:
            if options.text is not None:
                message.add_alternative(options.html, subtype="html")
            else:
                message.set_content(options.html, subtype="html")
        if message.is_multipart():  # a stable boundary: dry-run shows what is sent, byte for byte
            digest = hashlib.sha256(message.as_string().encode()).hexdigest()[:24]
            message.set_boundary(f"omi-rules-{digest}")
        envelope_from = next(iter(addresses(sender)), sender)
        return EmailRequest(
            host=env.secret("SMTP_HOST"),
            port=port,
            security=security,
            mail_from=envelope_from,
            rcpt_to=to + cc + bcc,
            message=message.as_string(),
            timeout=options.timeout,
        )

    async def send(self, request: EmailRequest, env: SendEnv) -> Delivered:
        return await asyncio.to_thread(self._send_blocking, request, env)

    def _send_blocking(self, request: EmailRequest, env: SendEnv) -> Delivered:
        headers = f"Date: {formatdate(localtime=True)}\r\n"
        domain = request.mail_from.rpartition("@")[2] or "omi-rules.local"
        key = re.sub(r"[^\w.-]", "-", env.idempotency_key) if env.idempotency_key else None
        headers += f"Message-ID: {make_msgid(idstring=key, domain=domain)}\r\n"
        body = (headers + request.message.replace("\r\n", "\n").replace("\n", "\r\n")).encode()
        context = ssl.create_default_context(cafile=_optional(env, "SMTP_CA_FILE"))
        username, password = _optional(env, "SMTP_USERNAME"), _optional(env, "SMTP_PASSWORD")
        where = f"smtp://{request.host}:{request.port}"
        try:
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
                refused = client.sendmail(request.mail_from, request.rcpt_to, body)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {text}",
                connector=self.name,
                status=exc.smtp_code,
                url=where,
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"recipients refused: {exc.recipients}", connector=self.name, url=where
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"{type(exc).__name__}: {exc}", connector=self.name, url=where, retryable=True
            ) from None
        if refused:
            return Delivered(status=250, response=f"accepted, but refused: {sorted(refused)}")
        return Delivered(status=250, response=f"accepted for {len(request.rcpt_to)} recipient(s)")


def _optional(env: SendEnv, name: str) -> str | None:
    try:
        return env.secret(name)
    except SecretError:  # an optional secret that is not set
        return None


connector = Email()
