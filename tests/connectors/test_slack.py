"""Slack against loopback servers speaking Slack's wire format: incoming webhooks and
chat.postMessage, their error bodies and 429 with Retry-After."""

from __future__ import annotations

import msgspec
import pytest
import yaml

from connectors.slack import connector as slack
from engine.errors import DeliveryError
from tests.connectors.helpers import render, send
from tests.connectors.services import bearer_token, serving
from tests.servers import Received, Reply, TargetServer

TOKEN = "xoxb-1234-abcd"
CHANNELS = {"C0123", "#general"}

BLOCKS_YAML = """
- type: header
  text: {type: plain_text, text: "🗓 Launch review"}
- type: section
  text:
    type: mrkdwn
    text: "*Action items*\\n• Ship the beta\\n• Email Dana"
- type: context
  elements:
    - {type: mrkdwn, text: "from Omi"}
"""


def fake_slack_api(request: Received) -> Reply:
    """chat.postMessage as Slack answers it: HTTP 200 with ok true or false."""
    if request.method != "POST" or request.path != "/api/chat.postMessage":
        return Reply(404, {"ok": False, "error": "unknown_method"})
    if bearer_token(request) != TOKEN:
        return Reply(200, {"ok": False, "error": "invalid_auth"})
    if not (request.header("Content-Type") or "").startswith("application/json"):
        return Reply(200, {"ok": False, "error": "invalid_form_data"})
    message = request.json()
    if message.get("channel") not in CHANNELS:
        return Reply(200, {"ok": False, "error": "channel_not_found"})
    if "blocks" in message and not all("type" in block for block in message["blocks"]):
        return Reply(
            200,
            {
                "ok": False,
                "error": "invalid_blocks",
                "response_metadata": {
                    "messages": ["[ERROR] missing required field: type [json-pointer:/blocks/0]"]
                },
            },
        )
    answer = {"ok": True, "channel": "C0123", "ts": "1712345678.000200", "message": message}
    return Reply(200, answer)


def test_webhook_posts_text_blocks_and_thread_as_json(target: TargetServer) -> None:
    blocks = yaml.safe_load(BLOCKS_YAML)
    options = {
        "webhook_url": f"{target.url}/services/T000/B000/XXXX",
        "text": "🗓 Launch review: 2 action items",
        "blocks": blocks,
        "thread_ts": "1712345678.000100",
    }
    delivered = send(slack, render(slack, options))

    (request,) = target.received
    assert request.method == "POST"
    assert request.path == "/services/T000/B000/XXXX"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Authorization") is None
    assert request.json() == {
        "text": "🗓 Launch review: 2 action items",
        "blocks": blocks,
        "thread_ts": "1712345678.000100",
    }
    assert delivered.status == 200
    assert delivered.response == "ok"


def test_blocks_alone_send_no_empty_text(target: TargetServer) -> None:
    blocks = yaml.safe_load(BLOCKS_YAML)
    send(slack, render(slack, {"webhook_url": f"{target.url}/hook", "blocks": blocks}))
    assert target.received[0].json() == {"blocks": blocks}


def test_bot_token_calls_chat_post_message() -> None:
    with serving(fake_slack_api) as api:
        options = {
            "token": TOKEN + "\n",  # as pasted into a secrets file
            "channel": "C0123",
            "text": "Standup notes are ready",
            "blocks": yaml.safe_load(BLOCKS_YAML),
            "thread_ts": "1712345678.000100",
            "api_url": f"{api.url}/api/",
        }
        delivered = send(slack, render(slack, options))

    (request,) = api.received
    assert request.path == "/api/chat.postMessage"
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    body = request.json()
    assert body["channel"] == "C0123"
    assert body["text"] == "Standup notes are ready"
    assert body["thread_ts"] == "1712345678.000100"
    assert body["blocks"][0]["text"]["text"] == "🗓 Launch review"
    assert delivered.status == 200
    assert '"ts": "1712345678.000200"' in delivered.response


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"channel": "C9999"}, "channel_not_found"),
        ({"token": "xoxb-wrong"}, "invalid_auth"),
        (
            {"blocks": [{"text": "no type"}]},
            "invalid_blocks: [ERROR] missing required field: type [json-pointer:/blocks/0]",
        ),
    ],
)
def test_ok_false_answers_are_permanent_errors_with_slacks_text(
    options: dict[str, object], error: str
) -> None:
    with serving(fake_slack_api) as api:
        given = {"token": TOKEN, "channel": "#general", "text": "hi", "api_url": f"{api.url}/api"}
        request = render(slack, {**given, **options})
        with pytest.raises(DeliveryError) as caught:
            send(slack, request)
    assert caught.value.message == error
    assert caught.value.connector == "slack"
    assert caught.value.status == 200
    assert caught.value.retryable is False
    assert str(caught.value) == f"slack HTTP 200 {api.url}/api/chat.postMessage: {error}"


def test_ok_false_ratelimited_is_retryable(target: TargetServer) -> None:
    target.script(Reply(200, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}))
    request = render(
        slack, {"token": TOKEN, "channel": "C0123", "text": "hi", "api_url": target.url}
    )
    with pytest.raises(DeliveryError) as caught:
        send(slack, request)
    assert caught.value.message == "ratelimited"
    assert caught.value.retryable is True
    assert caught.value.retry_after == 7.0


def test_an_answer_that_is_not_slack_json_is_an_error(target: TargetServer) -> None:
    target.script(Reply(200, "<html>captive portal</html>"))
    request = render(
        slack, {"token": TOKEN, "channel": "C0123", "text": "hi", "api_url": target.url}
    )
    with pytest.raises(DeliveryError) as caught:
        send(slack, request)
    assert caught.value.message == "not a Slack API answer: <html>captive portal</html>"
    assert caught.value.retryable is False


@pytest.mark.parametrize("mode", ["webhook", "token"])
def test_429_with_retry_after_is_retryable(target: TargetServer, mode: str) -> None:
    body = "rate_limited" if mode == "webhook" else {"ok": False, "error": "ratelimited"}
    target.script(Reply(429, body, {"Retry-After": "30"}))
    if mode == "webhook":
        options = {"webhook_url": f"{target.url}/services/T/B/X", "text": "hi"}
    else:
        options = {"token": TOKEN, "channel": "C0123", "text": "hi", "api_url": target.url}
    with pytest.raises(DeliveryError) as caught:
        send(slack, render(slack, options))
    error = caught.value
    assert error.status == 429
    assert error.retryable is True
    assert error.retry_after == 30.0
    assert error.message == ("rate_limited" if mode == "webhook" else "ratelimited")


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (400, "invalid_payload", False),
        (403, "invalid_token", False),
        (404, "no_service", False),
        (410, "channel_is_archived", False),
        (500, "rollup_error", True),
    ],
)
def test_webhook_errors_carry_slacks_text(
    target: TargetServer, status: int, body: str, retryable: bool
) -> None:
    target.script(Reply(status, body))
    request = render(slack, {"webhook_url": f"{target.url}/services/T/B/X", "text": "hi"})
    with pytest.raises(DeliveryError) as caught:
        send(slack, request)
    assert caught.value.status == status
    assert caught.value.message == body
    assert caught.value.retryable is retryable


def test_a_slow_slack_times_out_retryably(target: TargetServer) -> None:
    target.script(Reply(200, "ok", delay=1.0))
    options = {"webhook_url": f"{target.url}/hook", "text": "hi", "timeout": 0.2}
    with pytest.raises(DeliveryError) as caught:
        send(slack, render(slack, options))
    assert caught.value.retryable is True
    assert caught.value.message.startswith("timed out after 0.2s")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"text": "hi"}, "give webhook_url, or token and channel"),
        ({"token": "t", "text": "hi"}, "give webhook_url, or token and channel"),
        (
            {"webhook_url": "https://hooks.slack.com/x", "channel": "C1", "text": "hi"},
            "give webhook_url, or token and channel, not both",
        ),
        ({"webhook_url": "https://hooks.slack.com/x"}, "give text or blocks"),
    ],
)
def test_validate_names_what_is_missing(options: dict[str, str], problem: str) -> None:
    problems = slack.validate(msgspec.convert(options, slack.Options))
    assert [message for _field, message in problems] == [problem]
