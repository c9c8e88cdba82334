"""The per-user setup page: Omi's Auth URL (`GET /setup?uid=...`).

A user of a published Omi app fills in the settings the app's rules declare (`settings:`):
a Slack webhook URL, a Notion token and database, a Home Assistant URL and token. Each
connector that reads one gets a "test" button (engine.server.setup_probe); "Disconnect"
removes the user's settings and, when asked, their stored events.

Trust model (README "Per-user settings"): a uid is not a secret, so the page never shows a
stored value (only "set" / "not set"), and every POST carries a one-time form token issued
with the page for that uid (engine.server.form_tokens), else 403. A value already set is
replaced only with the admin token (form field `admin_token`, or the usual header); the
user changes theirs by disconnecting and entering them again. Without the admin token a
save is the uid's whole first setup: refused once the uid has any stored setting, and it
must set every required setting at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, get, post
from litestar.datastructures import FormMultiDict
from litestar.response import Template

from engine.connector import Probe
from engine.errors import SettingsTaken, TooManyUsers
from engine.rules.user_setup import SetupField, applying_rules, connectors_to_test, setup_fields
from engine.secrets import MIN_MASKED_LENGTH
from engine.server.form_tokens import FormTokens
from engine.server.omi_query import recover_query
from engine.server.receiver import Receiver, receiver_of
from engine.server.setup_probe import probe_connector
from web.session import LoginLimiter, WebAuth, client_address

FORM_BODY_LIMIT = 64 * 1024  # a page's settings; the page is public
MAX_UID = 200
MAX_VALUE = 2048
FORM_TOKEN_FIELD = "_form"
# a uid is not a secret and anyone may make one up, so each write and test is limited per
# uid, per client address and in all (a minute's worth; 429 past it)
TESTS_PER_MINUTE = 5  # per uid
TESTS_PER_CLIENT = 10
TESTS_IN_ALL = 60
WRITES_PER_CLIENT = 10  # saves and disconnects
WRITES_IN_ALL = 120
ALREADY_SET = (
    "this uid's settings are already set; only the server's owner (admin token) can replace "
    "it or add to them. Disconnect to start again."
)


class SetupRefused(Exception):
    """A setup write that is refused, with the status and the reason shown."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def query_uid(request: Request[Any, Any, Any]) -> str:
    """The uid Omi appends to the Auth URL (older backends double the `?`)."""
    return recover_query(request.scope.get("query_string", b"")).get("uid", "")


def _per_minute(count: int) -> LoginLimiter:
    return LoginLimiter(count, 60.0)


@dataclass
class SetupGuards:
    """One app's setup-page state (app.state.setup): its one-time form tokens, and the
    limits on tests (each sends a request) and writes: per uid, per client address and in
    all, so rotating made-up uids is no way around them."""

    tokens: FormTokens = field(default_factory=FormTokens)
    tests: LoginLimiter = field(default_factory=lambda: _per_minute(TESTS_PER_MINUTE))
    client_tests: LoginLimiter = field(default_factory=lambda: _per_minute(TESTS_PER_CLIENT))
    all_tests: LoginLimiter = field(default_factory=lambda: _per_minute(TESTS_IN_ALL))
    client_writes: LoginLimiter = field(default_factory=lambda: _per_minute(WRITES_PER_CLIENT))
    all_writes: LoginLimiter = field(default_factory=lambda: _per_minute(WRITES_IN_ALL))

    def spend_test(self, uid: str, client: str) -> bool:
        """Count a test; False (nothing counted) when a limit is reached."""
        limits = ((self.tests, uid), (self.client_tests, client), (self.all_tests, ""))
        return _spend(limits)

    def spend_write(self, client: str) -> bool:
        return _spend(((self.client_writes, client), (self.all_writes, "")))


def _spend(limits: tuple[tuple[LoginLimiter, str], ...]) -> bool:
    if any(limiter.retry_after(key) for limiter, key in limits):
        return False
    for limiter, key in limits:
        limiter.failed(key)  # every one counts
    return True


def _guards(request: Request[Any, Any, Any]) -> SetupGuards:
    guards: SetupGuards = request.app.state.setup
    return guards


def _tokens(request: Request[Any, Any, Any]) -> FormTokens:
    return _guards(request).tokens


def valid_uid(uid: str) -> str:
    uid = uid.strip()
    if not uid or len(uid) > MAX_UID or not uid.isprintable():
        raise SetupRefused(400, "this page needs the uid Omi adds to its address (?uid=...)")
    return uid


def check_value(entry: SetupField, value: str) -> str | None:
    """Why `value` cannot be stored for `entry`, or None."""
    setting = entry.setting
    label = setting.label or setting.name
    if len(value) > MAX_VALUE or not value.isprintable():
        return f"{label}: at most {MAX_VALUE} printable characters"
    if entry.secret and len(value) < MIN_MASKED_LENGTH:
        return f"{label}: a secret has at least {MIN_MASKED_LENGTH} characters"
    if setting.type == "url":
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{label}: not an http(s) URL"
    return None


async def page_context(
    request: Request[Any, Any, Any],
    uid: str,
    *,
    notice: str = "",
    error: str = "",
    probe: tuple[str, Probe] | None = None,
) -> dict[str, Any]:
    receiver = receiver_of(request)
    rules = applying_rules(receiver.pipeline.rules, uid, receiver.secrets)
    stored = await receiver.store.read(lambda _store: receiver.user_settings.stored(uid))
    fields = setup_fields(rules)
    return {
        "request": request,
        "uid": uid,
        "fields": fields,
        "stored": stored,
        "connectors": connectors_to_test(rules),
        "complete": await receiver.setup_completed(uid),
        "form_token": _tokens(request).issue(uid),
        "notice": notice,
        "error": error,
        "probe": probe,
    }


async def render(
    request: Request[Any, Any, Any], uid: str, status: int = 200, **context: Any
) -> Template:
    return Template(
        template_name="setup.html",
        context=await page_context(request, uid, **context),
        status_code=status,
    )


@get(
    "/setup",
    summary="Omi's Auth URL: the per-user setup page (query: uid)",
    include_in_schema=False,
)
async def setup_page(request: Request[Any, Any, Any]) -> Template:
    try:
        uid = valid_uid(query_uid(request))
    except SetupRefused as exc:
        return _bare_page(request, exc)
    return await render(request, uid)


async def _form(request: Request[Any, Any, Any]) -> tuple[str, FormMultiDict]:
    """The posted form and its uid, once its one-time token is spent (SetupRefused)."""
    form = await request.form()
    uid = valid_uid(str(form.get("uid") or ""))
    if not _tokens(request).consume(uid, str(form.get(FORM_TOKEN_FIELD) or "")):
        raise SetupRefused(403, "this form has expired or was already sent; reload the page")
    return uid, form


def _spend_write(request: Request[Any, Any, Any]) -> None:
    if not _guards(request).spend_write(client_address(request)):
        raise SetupRefused(429, "too many changes; try again in a minute")


def is_admin(request: Request[Any, Any, Any], form: FormMultiDict) -> bool:
    """Whether the request carries the admin token (header, or the form's owner field). A
    wrong one counts against the client as a failed login does (web.session.LoginLimiter),
    so the public form is no faster way to guess the token than the login page."""
    from engine.server.access import presented_token  # access imports web: not at load

    auth: WebAuth = request.app.state.web_auth
    given = presented_token(dict(request.scope)) or str(form.get("admin_token") or "")
    if not given:
        return False
    client = client_address(request)
    if auth.limiter.retry_after(client):
        raise SetupRefused(429, "too many wrong admin tokens; try again later")
    if auth.token_matches(given):
        return True
    auth.limiter.failed(client)
    raise SetupRefused(403, "wrong admin token")


async def save_settings(receiver: Receiver, uid: str, form: FormMultiDict, *, admin: bool) -> str:
    """Store what the form sets; returns what happened (SetupRefused when refused).

    Without the admin token a save is the uid's first and whole setup: refused when the
    uid has any stored setting (else someone could fill an unset URL next to another's
    stored token, and receive it), and it must set every required setting at once."""
    rules = applying_rules(receiver.pipeline.rules, uid, receiver.secrets)
    stored = await receiver.store.read(lambda _store: receiver.user_settings.stored(uid))
    if stored and not admin:
        raise SetupRefused(403, ALREADY_SET)
    changes: dict[str, tuple[str, bool]] = {}
    missing: list[str] = []
    for entry in setup_fields(rules):
        value = str(form.get(entry.name) or "").strip()
        if not value:
            if entry.required and entry.name not in stored:
                missing.append(entry.setting.label or entry.name)
            continue  # left empty: unchanged (Disconnect clears)
        problem = check_value(entry, value)
        if problem:
            raise SetupRefused(400, problem)
        changes[entry.name] = (value, entry.secret)
    if not changes:
        return "nothing to save"
    if missing and not admin:
        raise SetupRefused(400, f"fill in every required setting at once: {', '.join(missing)}")
    try:
        await receiver.user_settings.save(uid, changes, first=not admin)
    except SettingsTaken:
        raise SetupRefused(403, ALREADY_SET) from None
    except TooManyUsers as exc:
        raise SetupRefused(503, str(exc)) from None
    return "saved " + ", ".join(sorted(changes))


@post("/setup", status_code=200, include_in_schema=False, request_max_body_size=FORM_BODY_LIMIT)
async def setup_save(request: Request[Any, Any, Any]) -> Template:
    try:
        uid, form = await _form(request)
        _spend_write(request)
        notice = await save_settings(receiver_of(request), uid, form, admin=is_admin(request, form))
    except SetupRefused as exc:
        return await _refused(request, exc)
    return await render(request, uid, notice=notice)


@post(
    "/setup/test", status_code=200, include_in_schema=False, request_max_body_size=FORM_BODY_LIMIT
)
async def setup_test(request: Request[Any, Any, Any]) -> Template:
    try:
        uid, form = await _form(request)
    except SetupRefused as exc:
        return await _refused(request, exc)
    connector = str(form.get("connector") or "")
    if not _guards(request).spend_test(uid, client_address(request)):
        return await render(request, uid, status=429, error="too many tests; try again in a minute")
    result = await probe_connector(receiver_of(request), uid, connector)
    return await render(request, uid, probe=(connector, result))


@post(
    "/setup/disconnect",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=FORM_BODY_LIMIT,
)
async def setup_disconnect(request: Request[Any, Any, Any]) -> Template:
    try:
        uid, form = await _form(request)
        _spend_write(request)
    except SetupRefused as exc:
        return await _refused(request, exc)
    forget = form.get("forget_events") == "on"
    receiver = receiver_of(request)
    removed, events = await receiver.disconnect(uid, forget_events=forget)
    notice = f"disconnected: {removed} setting(s) removed"
    if forget:
        notice += f", {events} stored event(s) deleted"
    return await render(request, uid, notice=notice)


async def _refused(request: Request[Any, Any, Any], exc: SetupRefused) -> Template:
    form = await request.form()
    try:
        uid = valid_uid(str(form.get("uid") or ""))
    except SetupRefused:
        return _bare_page(request, exc)
    return await render(request, uid, status=exc.status, error=exc.reason)


def _bare_page(request: Request[Any, Any, Any], exc: SetupRefused) -> Template:
    """The page with only `exc`'s reason: no usable uid to show settings for."""
    return Template(
        template_name="setup.html",
        context={"request": request, "uid": "", "error": exc.reason, "fields": []},
        status_code=exc.status,
    )


ROUTES = [setup_page, setup_save, setup_test, setup_disconnect]
