"""Logging in to the web editor in a real Chromium against a real server."""

from __future__ import annotations

from typing import Any

from engine.server.access import CSP
from tests.browser.conftest import log_in
from tests.server_helpers import ADMIN_TOKEN

RETRY_ANY = """async (csrf) => {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const headers = csrf ? {"X-CSRF-Token": token} : {};
  const answer = await fetch("/api/actions/1/retry", {method: "POST", headers});
  return {status: answer.status, body: await answer.text()};
}"""


def test_a_wrong_token_is_refused_with_a_visible_message(page: Any, shot: Any) -> None:
    first = page.goto("/ui?tab=2")
    assert page.url.endswith("/ui/login?next=%2Fui%3Ftab%3D2")
    assert first.status == 200
    shot(page, "login")
    answer = log_in(page, token="not-the-token", start=page.url)
    assert answer.status == 401
    assert page.locator("#login-error").inner_text() == "wrong token"
    assert page.locator("#login-error").is_visible()
    assert "/ui/login" in page.url
    assert page.context.cookies() == []
    shot(page, "login-wrong-token")


def test_the_right_token_logs_in_and_lands_on_ui(page: Any, shot: Any) -> None:
    answer = log_in(page)
    assert answer.status == 200
    assert page.url.endswith("/ui")
    assert page.locator("h1").inner_text() == "Rules"
    assert page.locator("nav >> text=Dead letters").is_visible()
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "omi_rules_session"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
    assert ADMIN_TOKEN not in page.content()
    shot(page, "home-after-login")


def test_login_returns_to_the_page_asked_for(page: Any) -> None:
    log_in(page, start="/ui/login?next=%2Fui%3Ftab%3D2")
    assert page.url.endswith("/ui?tab=2")


def test_a_cookie_authenticated_post_needs_the_csrf_token(logged_in_page: Any) -> None:
    without = logged_in_page.evaluate(RETRY_ANY, False)
    assert without == {"status": 403, "body": '{"error":"missing or wrong CSRF token"}'}
    with_token = logged_in_page.evaluate(RETRY_ANY, True)
    assert with_token["status"] == 404  # past the CSRF check: there is no dead action 1
    through_helper = logged_in_page.evaluate(
        "async () => (await window.omiFetch('/api/actions/1/retry', {method: 'POST'})).status"
    )
    assert through_helper == 404


def test_page_request_with_the_cookie_but_without_csrf_is_refused(logged_in_page: Any) -> None:
    answer = logged_in_page.request.post("/api/actions/1/retry")
    assert answer.status == 403
    assert answer.json() == {"error": "missing or wrong CSRF token"}


def test_logout_ends_the_session(logged_in_page: Any) -> None:
    with logged_in_page.expect_navigation():
        logged_in_page.click("nav >> text=Logout")
    assert "/ui/login" in logged_in_page.url
    logged_in_page.goto("/ui")
    assert "/ui/login?next=%2Fui" in logged_in_page.url
    assert logged_in_page.request.get("/api/rules").status == 401


def test_every_ui_answer_carries_the_csp_and_the_page_breaks_none_of_it(
    page: Any, console_errors: list[str]
) -> None:
    for path in ("/ui/login", "/ui/static/app.css", "/ui/static/csrf.js"):
        answer = page.goto(path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "no-referrer", path
    log_in(page)
    page.wait_for_function("typeof window.omiFetch === 'function'")
    violations = [e for e in console_errors if "Content Security Policy" in e]
    assert violations == []
