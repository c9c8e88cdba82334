"""The http connector against a loopback server: every body kind, and every way a
request can fail (timeout, refused, 4xx, 5xx, 429, unexpected status, redirect loop)."""

from __future__ import annotations

import email.utils
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.http import connector as http
from engine.errors import DeliveryError
from tests.connectors.helpers import closed_port, render, send, send_plain
from tests.servers import Reply, TargetServer


def test_json_with_headers_and_query(target: TargetServer) -> None:
    options = {
        "url": f"{target.url}/hooks/omi?source=omi",
        "headers": {"X-Api-Key": "k-123", "X-Title": "Café ☕"},
        "query": {"rule": "work", "q": "a b&c"},
        "json": {"title": "Launch", "items": [1, 2], "done": False, "none": None},
    }
    delivered = send(http, render(http, options), idempotency_key="evt-9:work:0")

    (request,) = target.received
    assert request.method == "POST"
    path = urlsplit(request.path)
    assert path.path == "/hooks/omi"
    assert parse_qs(path.query) == {"source": ["omi"], "rule": ["work"], "q": ["a b&c"]}
    assert request.header("X-Api-Key") == "k-123"
    assert request.header("X-Title").encode("latin-1").decode() == "Café ☕"  # sent as UTF-8
    assert request.header("Content-Type") == "application/json"
    assert request.header("Idempotency-Key") == "evt-9:work:0"
    assert request.json() == {"title": "Launch", "items": [1, 2], "done": False, "none": None}
    assert (delivered.status, delivered.response) == (200, "ok")


def test_form_body(target: TargetServer) -> None:
    options = {"url": f"{target.url}/form", "form": {"name": "Dana Lee", "note": "a&b=c"}}
    send(http, render(http, options))
    (request,) = target.received
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode()) == {"name": ["Dana Lee"], "note": ["a&b=c"]}


def test_raw_body_with_its_own_content_type(target: TargetServer) -> None:
    options = {
        "method": "PUT",
        "url": f"{target.url}/notes/1",
        "headers": {"content-type": "text/markdown; charset=utf-8"},
        "body": "# Notes\n\n- ünïcode\n",
    }
    send(http, render(http, options))
    (request,) = target.received
    assert request.method == "PUT"
    assert request.header("Content-Type") == "text/markdown; charset=utf-8"
    assert request.body == "# Notes\n\n- ünïcode\n".encode()


def test_json_keeps_a_content_type_given_in_any_case(target: TargetServer) -> None:
    options = {
        "url": target.url,
        "headers": {"content-type": "application/vnd.api+json"},
        "json": {"a": 1},
    }
    send(http, render(http, options))
    (request,) = target.received
    assert [k for k in request.headers if k.lower() == "content-type"] == ["content-type"]
    assert request.header("Content-Type") == "application/vnd.api+json"


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_other_methods(target: TargetServer, method: str) -> None:
    send(http, render(http, {"method": method, "url": f"{target.url}/thing"}))
    assert (target.received[0].method, target.received[0].path) == (method, "/thing")
    assert target.received[0].body == b""


def test_expect_status(target: TargetServer) -> None:
    target.script(Reply(201, "created"), Reply(200, "fine but not created"))
    request = render(http, {"url": target.url, "json": {}, "expect_status": 201})
    assert send(http, request).status == 201
    with pytest.raises(DeliveryError) as caught:
        send(http, request)
    assert caught.value.message == "fine but not created (expected status 201)"
    assert caught.value.status == 200
    assert caught.value.retryable is False


def test_expect_status_may_allow_a_non_2xx(target: TargetServer) -> None:
    target.script(Reply(409, "already exists"))
    request = render(http, {"url": target.url, "expect_status": [200, 201, 409]})
    assert send(http, request).status == 409


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, '{"error": "missing field: title"}'),
        (401, "bad api key"),
        (404, "no such hook"),
        (422, "Unprocessable: title too long"),
    ],
)
def test_4xx_is_permanent_with_the_body_text(target: TargetServer, status: int, body: str) -> None:
    target.script(Reply(status, body))
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": f"{target.url}/hook", "json": {}}))
    error = caught.value
    assert (error.status, error.message, error.retryable) == (status, body, False)
    assert str(error) == f"http HTTP {status} {target.url}/hook: {body}"


def test_an_empty_error_body_gives_the_reason_phrase(target: TargetServer) -> None:
    target.script(Reply(403, b""))
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": target.url}))
    assert caught.value.message == "Forbidden"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_5xx_and_408_are_retryable(target: TargetServer, status: int) -> None:
    target.script(Reply(status, "upstream trouble"))
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": target.url}))
    assert caught.value.retryable is True
    assert caught.value.message == "upstream trouble"


def test_429_honours_retry_after_seconds_and_dates(target: TargetServer) -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    target.script(
        Reply(429, "slow down", {"Retry-After": "12"}),
        Reply(503, "maintenance", {"Retry-After": later}),
    )
    request = render(http, {"url": target.url})
    with pytest.raises(DeliveryError) as first:
        send(http, request)
    assert (first.value.retryable, first.value.retry_after) == (True, 12.0)
    with pytest.raises(DeliveryError) as second:
        send(http, request)
    assert second.value.retry_after is not None and 60 < second.value.retry_after <= 120


def test_a_timeout_is_retryable(target: TargetServer) -> None:
    target.script(Reply(200, "too late", delay=1.0))
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": target.url, "timeout": 0.2}))
    assert caught.value.retryable is True
    assert caught.value.message == "timed out after 0.2s (ReadTimeout)"


def test_a_refused_connection_is_retryable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook"
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": url}))
    assert caught.value.retryable is True
    assert caught.value.message.startswith("ConnectError:")
    assert caught.value.url == url


def test_a_redirect_loop_is_permanent(target: TargetServer) -> None:
    target.default = Reply(302, b"", {"Location": "/again"})
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"method": "GET", "url": f"{target.url}/start"}))
    assert caught.value.message == "TooManyRedirects: Exceeded maximum allowed redirects."
    assert caught.value.retryable is False


def test_without_redirect_following_a_302_is_an_error(target: TargetServer) -> None:
    """SendEnv's defaults: a bare client does not follow, the default guard still runs."""
    target.script(Reply(302, "moved", {"Location": "http://169.254.169.254/"}))
    with pytest.raises(DeliveryError) as caught:
        send_plain(http, render(http, {"url": target.url}))
    assert caught.value.status == 302
    assert len(target.received) == 1


def test_the_default_guard_refuses_metadata_urls() -> None:
    with pytest.raises(DeliveryError) as caught:
        send_plain(http, render(http, {"url": "http://169.254.169.254/latest/meta-data"}))
    assert "link-local or cloud metadata" in caught.value.message
    assert caught.value.connector == "http"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/file", "http://[::1"])
def test_a_url_that_cannot_be_sent_is_permanent(url: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": url}))
    assert caught.value.retryable is False


def test_a_line_break_in_a_header_fails_at_render() -> None:
    options = {"url": "http://127.0.0.1/", "headers": {"X-Title": "Hi\r\nX-Admin: yes"}}
    with pytest.raises(ValueError, match="header X-Title: value 'Hi\\\\r\\\\nX-Admin: yes'"):
        render(http, options)


def test_validate_refuses_two_bodies_and_odd_timeouts() -> None:
    import msgspec

    both = msgspec.convert({"url": "http://x", "json": {}, "body": "b"}, http.Options)
    assert http.validate(both) == [
        ("body", "give one of json, form, body, body_audio (got json, body)")
    ]
    slow = msgspec.convert({"url": "http://x", "timeout": 0}, http.Options)
    assert http.validate(slow) == [("timeout", "timeout must be between 0 and 300 seconds")]
