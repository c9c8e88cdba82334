"""Browser sessions for the web editor: the login form, the session cookie, its CSRF token,
and the limit on failed logins.

A person logs in once with the admin token (`POST /ui/login`); the server answers with a
cookie `omi_rules_session` holding a random id (HttpOnly, SameSite=Strict, Path=/, Secure on
https). The id maps, in memory, to a `Session` with its own CSRF token and an expiry 12 h
after login; a restart logs everyone out. engine.server.access lets a request in with the
admin token header or a live session, and asks a cookie-authenticated POST, PUT, PATCH or
DELETE for the session's CSRF token (`X-CSRF-Token`, or the form field `_csrf`).

Pages read the token with `csrf_token(request)` or, in a template, `{{ csrf_token() }}`
(base.html puts it in `<meta name="csrf-token">`, where web/static/csrf.js finds it).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

SESSION_COOKIE = "omi_rules_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 1000  # only the admin token makes one; the cap is for a script logging in forever
LOGIN_FAILURES = 5  # failed logins allowed per client address ...
LOGIN_WINDOW = 60.0  # ... within this many seconds, then 429
MAX_LIMITED_CLIENTS = 10_000  # client addresses remembered by the limiter, oldest dropped
SCOPE_KEY = "omi_rules_session"  # where access puts the request's Session in the ASGI scope
UI_HOME = "/ui"


@dataclass
class Session:
    csrf: str
    expires: float


def _key(session_id: str) -> str:
    """Sessions are stored under a digest of their id: a lookup's timing says nothing
    about the ids that exist."""
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Live sessions by id, in memory, at most MAX_SESSIONS (the oldest dropped first)."""

    def __init__(self, seconds: float = SESSION_SECONDS, limit: int = MAX_SESSIONS) -> None:
        self.seconds = seconds
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, now: float | None = None) -> tuple[str, Session]:
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), expires=now + self.seconds)
        self._sessions[_key(session_id)] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str, now: float | None = None) -> Session | None:
        if not session_id:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= (time.time() if now is None else now):
            del self._sessions[key]
            return None
        return session

    def delete(self, session_id: str) -> None:
        self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimiter:
    """Failed logins per client address: more than `failures` within `window` seconds and
    that address is refused (429) until the oldest of them is older than the window. At
    most `clients` addresses are remembered, the least recently failing dropped first."""

    def __init__(
        self,
        failures: int = LOGIN_FAILURES,
        window: float = LOGIN_WINDOW,
        clients: int = MAX_LIMITED_CLIENTS,
    ) -> None:
        self.failures = failures
        self.window = window
        self.clients = clients
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        times = self._seen.get(client)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[client]
            return 0
        if len(times) < self.failures:
            return 0
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._seen.pop(client, None) or deque(maxlen=self.failures)
        times.append(now)
        self._seen[client] = times  # now the most recent
        while len(self._seen) > self.clients:
            self._seen.popitem(last=False)


class WebAuth:
    """The admin token, the sessions and the login limiter of one app (app.state.web_auth)."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()
        self.sessions = SessionStore()
        self.limiter = LoginLimiter()

    def token_matches(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token)


def _auth(request: Request[Any, Any, Any]) -> WebAuth:
    auth: WebAuth = request.app.state.web_auth
    return auth


def current_session(request: Request[Any, Any, Any]) -> Session | None:
    """The session this request came with (set by engine.server.access), else None (the
    admin token header, or a public page)."""
    session = request.scope.get(SCOPE_KEY)
    return session if isinstance(session, Session) else None


def csrf_token(request: Request[Any, Any, Any]) -> str:
    """The CSRF token a page must send back with unsafe requests; "" without a session."""
    session = current_session(request)
    return session.csrf if session else ""


def template_csrf_token(context: Mapping[str, Any], /) -> str:
    """`{{ csrf_token() }}` in templates."""
    return csrf_token(context["request"])


def safe_next(value: str | None) -> str:
    """Where to go after login: `value` if it is a local /ui path, else /ui. Nothing with a
    scheme, a host, `//`, a backslash, a space, a control or non-ASCII character gets
    through (a browser sends paths percent-encoded)."""
    if not value or any(not 0x21 <= ord(c) <= 0x7E or c == "\\" for c in value):
        return UI_HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return UI_HOME
    if parts.path != UI_HOME and not parts.path.startswith(UI_HOME + "/"):
        return UI_HOME
    return value


def client_address(request: Request[Any, Any, Any]) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else "unknown"


def _login_page(next_path: str, error: str = "", status: int = 200) -> Template:
    return Template(
        template_name="login.html",
        context={"next": next_path, "error": error},
        status_code=status,
    )


@get("/ui/login", name="ui-login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Template | Redirect:
    next_path = safe_next(request.query_params.get("next"))
    if _auth(request).sessions.get(request.cookies.get(SESSION_COOKIE, "")):
        return Redirect(next_path, status_code=303)
    return _login_page(next_path)


# a token and a `next` path: anything larger is refused before it is read (the page is public)
LOGIN_BODY_LIMIT = 8192


@post(
    "/ui/login",
    name="ui-login-submit",
    include_in_schema=False,
    request_max_body_size=LOGIN_BODY_LIMIT,
)
async def login_submit(request: Request[Any, Any, Any]) -> Template | Redirect:
    auth = _auth(request)
    client = client_address(request)
    form = await request.form()
    next_path = safe_next(str(form.get("next") or ""))
    wait = auth.limiter.retry_after(client)
    if wait:
        page = _login_page(next_path, "too many wrong tokens; try again later", 429)
        page.headers["Retry-After"] = str(wait)
        return page
    if not auth.token_matches(str(form.get("token") or "")):
        auth.limiter.failed(client)
        return _login_page(next_path, "wrong token", 401)
    session_id, _session = auth.sessions.create()
    return Redirect(
        next_path,
        status_code=303,
        cookies=[session_cookie(session_id, secure=request.scope.get("scheme") == "https")],
    )


@post("/ui/logout", name="ui-logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if session_id:
        _auth(request).sessions.delete(session_id)
    cleared = session_cookie("", secure=request.scope.get("scheme") == "https", max_age=0)
    return Redirect("/ui/login", status_code=303, cookies=[cleared])


def session_cookie(value: str, *, secure: bool, max_age: int = SESSION_SECONDS) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        path="/",
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=secure,
    )


HANDLERS = [login_page, login_submit, logout]
