"""Who may reach what: the Host check for every request, the admin token for everything
that is not one of Omi's webhooks, the setup pages or the health check.

Omi's webhooks carry their own signature or token (engine.server.receiver); `/setup*` is opened by
Omi for any user and `/health` says nothing private. Everything else (`/api/*`, `/schema`,
`/metrics`, `/ui`) shows transcripts, rules and requests, so it needs the admin token:
`Authorization: Bearer <token>` or `X-Omi-Rules-Admin-Token: <token>`.

A browser comes in with the session cookie instead (web.session: log in once with the
token at `/ui/login`), for `/ui*` and `/api/*` only. A cookie rides along on any request
the browser makes, so a cookie-authenticated POST, PUT, PATCH or DELETE must also carry
the session's CSRF token (`X-CSRF-Token`, or `_csrf` in a url-encoded form), else 403.
Without either, a `/ui` page redirects to the login form; everything else gets 401.
Every `/ui` answer carries the Content-Security-Policy and friends (add_security_headers).

The Host check stops DNS rebinding: a web page whose name resolves to 127.0.0.1 would
otherwise talk to a server on loopback as if it were its own origin.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import msgspec

from engine.config import Settings
from engine.keyfiles import read_or_create
from web.session import SCOPE_KEY, SESSION_COOKIE, Session, WebAuth

log = logging.getLogger("omi_rules.access")

TOKEN_FILE = "admin-token"
ADMIN_HEADER = b"x-omi-rules-admin-token"
PUBLIC_PREFIXES = ("/webhook/", "/setup")
PUBLIC_PATHS = frozenset({"/health", "/ui/login"})
PUBLIC_UI_PREFIX = "/ui/static/"  # stylesheet and scripts: the login page needs them
COOKIE_PREFIXES = ("/ui/", "/api/")  # where a session cookie stands in for the token
CSRF_HEADER = b"x-csrf-token"
CSRF_FIELD = "_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 1 << 20  # a url-encoded form read here for its `_csrf` field
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
MAX_HOSTS_KNOWN = 256  # distinct Host values whose answer is remembered
MAX_HOSTS_LOGGED = 100  # distinct refused Host values logged, so a flood cannot fill the log


def admin_token(settings: Settings) -> tuple[str, bool]:
    """The configured admin token, else the one kept under the data folder (made at first
    start). Returns (token, created now)."""
    if settings.admin_token:
        return settings.admin_token, False
    return read_or_create(Path(settings.data_dir) / TOKEN_FILE)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES + (PUBLIC_UI_PREFIX,))


def is_ui(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")


def is_setup_page(path: str) -> bool:
    """The public per-user setup page and its forms (web.setup_pages)."""
    return path == "/setup" or (path.startswith("/setup/") and path != "/setup/completed")


def accepts_cookie(path: str) -> bool:
    return is_ui(path) or path.startswith(COOKIE_PREFIXES)


def host_name(value: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheck:
    def __init__(self, allowed: Iterable[str]) -> None:
        self.patterns = [host_name(a) if a != "*" else "*" for a in allowed]
        self.patterns.extend(LOOPBACK_NAMES)
        self._known: dict[str, bool] = {}  # Host header -> allowed (checked on every request)

    def allows(self, host: str) -> bool:
        known = self._known.get(host)
        if known is None:
            name = host_name(host)
            known = any(
                p == "*" or p == name or fnmatch.fnmatchcase(name, p) for p in self.patterns
            )
            if len(self._known) < MAX_HOSTS_KNOWN:  # a flood of made-up names is not kept
                self._known[host] = known
        return known


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def cookie_value(scope: dict[str, Any], name: str) -> str:
    """One cookie of the request ("" when absent); a malformed pair is skipped."""
    for key, value in scope.get("headers", ()):
        if key != b"cookie":
            continue
        for pair in bytes(value).decode("latin-1").split(";"):
            got, sep, text = pair.strip().partition("=")
            if sep and got == name:
                return text.strip().strip('"')
    return ""


def presented_token(scope: dict[str, Any]) -> str:
    token = _header(scope, ADMIN_HEADER)
    if token:
        return token.strip()
    auth = _header(scope, b"authorization")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""


class AccessMiddleware:
    """ASGI middleware applying the Host check, the admin token or session cookie, the CSRF
    check and the `/ui` security headers (see module docs)."""

    def __init__(
        self, app: Any, *, token: str, hosts: HostCheck, web_auth: WebAuth | None = None
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = hosts
        self.web_auth = web_auth or WebAuth(token)
        self._logged: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        host = _header(scope, b"host")
        if not self.hosts.allows(host):
            self._log_host(host)
            await _refuse(send, 421, f"host {host_name(host)!r} is not in allowed_hosts")
            return
        if not is_public(path):
            given = presented_token(scope).encode()
            if given:
                if not hmac.compare_digest(given, self.token):
                    await _refuse(send, 401, TOKEN_REQUIRED)
                    return
            else:
                session = self._session(scope, path)
                if session is None:
                    await self._unauthenticated(scope, send, path)
                    return
                if scope.get("method", "GET") in UNSAFE_METHODS:
                    ok, receive = await _csrf_ok(scope, receive, session)
                    if not ok:
                        await _refuse(send, 403, "missing or wrong CSRF token")
                        return
                scope[SCOPE_KEY] = session
        await self.app(scope, receive, send)

    def _session(self, scope: dict[str, Any], path: str) -> Session | None:
        if not accepts_cookie(path):
            return None
        return self.web_auth.sessions.get(cookie_value(scope, SESSION_COOKIE))

    async def _unauthenticated(self, scope: dict[str, Any], send: Any, path: str) -> None:
        if is_ui(path) and scope.get("method") in ("GET", "HEAD"):
            # raw_path stays %-encoded (some servers leave the query on it)
            raw = bytes(scope.get("raw_path") or path.encode()).split(b"?")[0].decode("latin-1")
            query = bytes(scope.get("query_string", b"")).decode("latin-1")
            wanted = raw + ("?" + query if query else "")
            await _redirect(send, "/ui/login?next=" + quote(wanted, safe=""))
            return
        await _refuse(send, 401, TOKEN_REQUIRED)

    def _log_host(self, host: str) -> None:
        name = host_name(host)
        if name in self._logged or len(self._logged) >= MAX_HOSTS_LOGGED:
            return
        self._logged.add(name)
        log.warning(
            "refused a request for host %r: add it to allowed_hosts (OMI_RULES_ALLOWED_HOSTS) "
            "if this server is reached under that name",
            name[:200],
        )


TOKEN_REQUIRED = (
    "admin token required (Authorization: Bearer <token>; "
    "see OMI_RULES_ADMIN_TOKEN or data/admin-token), or log in at /ui/login"
)


async def _csrf_ok(scope: dict[str, Any], receive: Any, session: Session) -> tuple[bool, Any]:
    """Whether the request carries the session's CSRF token, and the `receive` the app
    reads the body from (a url-encoded form is read here for `_csrf`, then replayed)."""
    given = _header(scope, CSRF_HEADER).strip()
    content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
    if not given and content_type == FORM_TYPE:
        body = await _read_body(receive, MAX_FORM_BYTES)
        if body is None:
            return False, receive
        receive = _replay(body)
        fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
        given = (fields.get(CSRF_FIELD) or [""])[0]
    ok = bool(given) and hmac.compare_digest(given.encode(errors="replace"), session.csrf.encode())
    return ok, receive


async def _read_body(receive: Any, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def add_security_headers(message: Any, scope: Any) -> None:
    """Litestar `before_send` hook: SECURITY_HEADERS on every `/ui` and setup page answer
    (refusals and 404s included, which app middleware never sees) and, for pages (they show
    transcripts), `Cache-Control: no-store`."""
    path = scope.get("path", "")
    if message["type"] != "http.response.start" or not (is_ui(path) or is_setup_page(path)):
        return
    headers = list(message.get("headers", ()))
    present = {bytes(k).lower() for k, _ in headers}
    headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
    if not path.startswith(PUBLIC_UI_PREFIX) and b"cache-control" not in present:
        headers.append((b"cache-control", b"no-store"))
    message["headers"] = headers


async def _redirect(send: Any, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode("latin-1")), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Any, status: int, reason: str) -> None:
    body = msgspec.json.encode({"error": reason})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
