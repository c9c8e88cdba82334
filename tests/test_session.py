"""The web editor's login, session cookie, CSRF check and security headers, over HTTP
(web.session, engine.server.access)."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from engine.server.access import CSP
from engine.server.app import create_app
from tests.server_helpers import ADMIN, ADMIN_TOKEN, LiveServer, server_settings
from web import STATIC, TEMPLATES
from web.session import SESSION_COOKIE, LoginLimiter, SessionStore, safe_next

ROOT = Path(__file__).resolve().parent.parent
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(server_settings(tmp_path)), base_url="http://127.0.0.1") as c:
        yield c


def log_in(client: TestClient[Any], token: str = ADMIN_TOKEN, **form: str) -> httpx.Response:
    return client.post("/ui/login", data={"token": token, **form}, follow_redirects=False)


def page_csrf(client: TestClient[Any]) -> str:
    match = CSRF_META.search(client.get("/ui").text)
    assert match, "no csrf-token meta on /ui"
    return match.group(1)


def test_login_sets_a_strict_httponly_session_cookie_over_a_real_socket(tmp_path: Path) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        answer = httpx.post(f"{server.url}/ui/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui"
    cookie = answer.headers["set-cookie"]
    parts = [p.strip().lower() for p in cookie.split(";")]
    assert parts[0].startswith(f"{SESSION_COOKIE}=")
    assert len(parts[0]) > len(SESSION_COOKIE) + 40  # 32 random bytes
    assert {"httponly", "path=/", "samesite=strict", "max-age=43200"} <= set(parts)
    assert "secure" not in parts  # plain http on loopback
    assert ADMIN_TOKEN not in answer.text and ADMIN_TOKEN not in cookie


def test_login_over_https_sets_a_secure_cookie(tmp_path: Path) -> None:
    app = create_app(server_settings(tmp_path))
    with TestClient(app=app, base_url="https://127.0.0.1") as client:
        answer = log_in(client)
    assert answer.status_code == 303
    assert "secure" in [p.strip().lower() for p in answer.headers["set-cookie"].split(";")]


def test_a_wrong_token_is_a_401_page_showing_neither_token(client: TestClient[Any]) -> None:
    answer = log_in(client, token="a-guess-1234")
    assert answer.status_code == 401
    assert "wrong token" in answer.text
    assert "a-guess-1234" not in answer.text and ADMIN_TOKEN not in answer.text
    assert "set-cookie" not in answer.headers
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_five_wrong_tokens_then_429_with_retry_after(client: TestClient[Any]) -> None:
    for _ in range(5):
        assert log_in(client, token="wrong").status_code == 401
    limited = log_in(client)  # even the right token, while the address is limited
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "too many wrong tokens" in limited.text
    assert "set-cookie" not in limited.headers


def test_the_limiter_forgets_old_failures_and_keeps_a_bounded_table() -> None:
    limiter = LoginLimiter(failures=2, window=60, clients=3)
    limiter.failed("a", now=0)
    assert limiter.retry_after("a", now=1) == 0
    limiter.failed("a", now=10)
    assert limiter.retry_after("a", now=11) == 49
    assert limiter.retry_after("a", now=60.5) == 0  # the first failure aged out
    for client in ("b", "c", "d", "e"):
        limiter.failed(client, now=70)
    assert len(limiter._seen) == 3
    assert "a" not in limiter._seen and "b" not in limiter._seen


def test_sessions_expire_and_the_store_is_bounded() -> None:
    store = SessionStore(seconds=100, limit=2)
    first, session = store.create(now=0)
    assert store.get(first, now=99) is session
    assert store.get(first, now=100) is None
    ids = [store.create(now=0)[0] for _ in range(3)]
    assert len(store) == 2
    assert store.get(ids[0], now=1) is None and store.get(ids[2], now=1) is not None
    assert store.get("", now=1) is None and store.get("made-up", now=1) is None


def test_a_cookie_authenticated_post_needs_the_csrf_token(client: TestClient[Any]) -> None:
    assert log_in(client).status_code == 303
    token = page_csrf(client)
    refused = client.post("/api/actions/1/retry")
    assert refused.status_code == 403
    assert refused.json() == {"error": "missing or wrong CSRF token"}
    wrong = client.post("/api/actions/1/retry", headers={"X-CSRF-Token": token[:-1] + "x"})
    assert wrong.status_code == 403
    as_form = client.post("/api/actions/1/retry", data={"_csrf": "nope"})
    assert as_form.status_code == 403
    allowed = client.post("/api/actions/1/retry", headers={"X-CSRF-Token": token})
    assert allowed.status_code == 404  # past the check: there is no dead action 1
    assert client.get("/api/rules").status_code == 200  # a GET needs no token


def test_a_form_field_csrf_token_works_and_logout_ends_the_session(
    client: TestClient[Any],
) -> None:
    log_in(client)
    token = page_csrf(client)
    answer = client.post("/ui/logout", data={"_csrf": token}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login"
    assert "max-age=0" in answer.headers["set-cookie"].lower()
    client.cookies.clear()
    assert client.get("/api/rules").status_code == 401


def test_a_logged_out_session_id_no_longer_opens_anything(client: TestClient[Any]) -> None:
    log_in(client)
    session_id = client.cookies[SESSION_COOKIE]
    client.post("/ui/logout", headers={"X-CSRF-Token": page_csrf(client)})
    client.cookies.set(SESSION_COOKIE, session_id)
    assert client.get("/api/rules").status_code == 401


def test_the_admin_token_header_still_works_without_csrf(client: TestClient[Any]) -> None:
    assert client.get("/api/rules", headers=ADMIN).status_code == 200
    assert client.post("/api/actions/1/retry", headers=ADMIN).status_code == 404
    assert client.get("/ui", headers=ADMIN).status_code == 200


def test_a_wrong_header_token_is_refused_even_with_a_session(client: TestClient[Any]) -> None:
    log_in(client)
    answer = client.get("/api/rules", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401


def test_the_cookie_opens_ui_and_api_only(client: TestClient[Any]) -> None:
    log_in(client)
    assert client.get("/metrics").status_code == 401
    assert client.get("/schema/openapi.json").status_code == 401


def test_unauthenticated_ui_redirects_to_login_with_next(client: TestClient[Any]) -> None:
    answer = client.get("/ui?tab=rules&x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%3Ftab%3Drules%26x%3D1"
    api = client.get("/api/rules")
    assert api.status_code == 401
    assert "admin token required" in api.json()["error"]
    assert client.post("/ui/logout", follow_redirects=False).status_code == 401


def test_login_goes_to_a_local_next(client: TestClient[Any]) -> None:
    answer = log_in(client, next="/ui?tab=2")
    assert answer.headers["location"] == "/ui?tab=2"
    page = client.get("/ui/login?next=%2Fui%2Fhistory", follow_redirects=False)
    assert page.status_code == 303  # already logged in
    assert page.headers["location"] == "/ui/history"


@pytest.mark.parametrize(
    "wanted",
    [
        "https://evil.example/ui",
        "//evil.example/ui",
        "/\\evil.example/ui",
        "\\\\evil.example",
        "/ui\r\nSet-Cookie: x=1",
        "/ui/\u20ac",
        "javascript:alert(1)//ui",
        "/api/rules",
        "/uix",
        "http:/ui",
        "",
    ],
)
def test_next_cannot_leave_the_ui(client: TestClient[Any], wanted: str) -> None:
    assert safe_next(wanted) == "/ui"
    answer = log_in(client, next=wanted)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui"


def test_every_ui_answer_carries_the_security_headers(client: TestClient[Any]) -> None:
    answers = [
        client.get("/ui/login"),
        client.get("/ui", follow_redirects=False),  # the redirect to login
        client.get("/ui/static/app.css"),
        client.get("/ui/no-such-page"),
        log_in(client, token="wrong"),
    ]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP, answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert answers[0].headers["cache-control"] == "no-store"
    assert "content-security-policy" not in client.get("/health").headers


def test_static_files_are_public_and_pages_are_not(client: TestClient[Any]) -> None:
    assert client.get("/ui/static/app.css").headers["content-type"].startswith("text/css")
    assert "omiFetch" in client.get("/ui/static/csrf.js").text
    assert client.get("/ui/static/../session.py").status_code in (401, 404)


def test_templates_have_no_inline_script_style_or_handler() -> None:
    """The CSP refuses them: every script is a file, every style is in a stylesheet."""
    for template in TEMPLATES.glob("*.html"):
        text = re.sub(r"\{#.*?#\}", "", template.read_text(), flags=re.S)  # comments
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"<style\b|\sstyle=", text), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert "javascript:" not in text, template.name


def test_the_web_package_ships_its_templates_and_static_files() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["web"]
    web = TEMPLATES.parent
    shipped = {p for g in globs for p in web.glob(g)}
    wanted = {*TEMPLATES.glob("*.html"), *STATIC.glob("*.css"), *STATIC.glob("*.js")}
    assert wanted and wanted <= shipped


def test_a_form_csrf_field_outside_latin1_is_a_403_not_a_crash(client: TestClient[Any]) -> None:
    log_in(client)
    answer = client.post(
        "/ui/logout",
        content="_csrf=%E2%82%AC",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403


def test_a_non_ascii_page_comes_back_after_login_percent_encoded(tmp_path: Path) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        with httpx.Client(base_url=server.url) as http:
            asked = http.get("/ui?x=%E2%82%AC")
            assert asked.status_code == 303
            assert asked.headers["location"] == "/ui/login?next=%2Fui%3Fx%3D%25E2%2582%25AC"
            answer = http.post(
                "/ui/login", data={"token": ADMIN_TOKEN, "next": "/ui/r%C3%A9gle?x=%E2%82%AC"}
            )
            assert answer.headers["location"] == "/ui/r%C3%A9gle?x=%E2%82%AC"
