"""Home Assistant against a loopback fake of its REST API: service calls and events, with
the bearer token checked and Home Assistant's own error answers."""

from __future__ import annotations

import re

import msgspec
import pytest

from connectors.home_assistant import connector as home_assistant
from engine.errors import DeliveryError
from tests.connectors.helpers import closed_port, render, send
from tests.connectors.services import bearer_token, serving
from tests.servers import Received, Reply, TargetServer

TOKEN = "eyJhbGciOiJIUzI1NiJ9.long-lived.token"
SERVICES = {("light", "turn_on"), ("notify", "mobile_app_pixel")}
SERVICE_PATH = re.compile(r"^/api/services/(\w+)/(\w+)$")
EVENT_PATH = re.compile(r"^/api/events/([\w.-]+)$")


def fake_home_assistant(request: Received) -> Reply:
    """What Home Assistant's REST API answers (homeassistant/components/api)."""
    if bearer_token(request) != TOKEN:
        return Reply(401, "401: Unauthorized", {"Content-Type": "text/plain; charset=utf-8"})
    if request.method != "POST":
        return Reply(405, "405: Method Not Allowed")
    try:
        data = request.json() if request.body else {}
    except ValueError:
        return Reply(400, {"message": "Data should be valid JSON."})
    if match := SERVICE_PATH.match(request.path):
        domain, service = match.groups()
        if (domain, service) not in SERVICES:
            return Reply(400, {"message": f"Service {domain}.{service} not found."})
        changed = [{"entity_id": data.get("entity_id", ""), "state": "on"}]
        return Reply(200, changed)
    if match := EVENT_PATH.match(request.path):
        return Reply(200, {"message": f"Event {match.group(1)} fired."})
    return Reply(404, "404: Not Found")


def test_calls_a_service_with_data_as_json() -> None:
    with serving(fake_home_assistant) as hass:
        options = {
            "url": hass.url + "/",
            "token": TOKEN,
            "service": "light.turn_on",
            "data": {"entity_id": "light.kitchen", "brightness_pct": 80, "color_name": "red"},
        }
        delivered = send(home_assistant, render(home_assistant, options))

    (request,) = hass.received
    assert request.method == "POST"
    assert request.path == "/api/services/light/turn_on"
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {
        "entity_id": "light.kitchen",
        "brightness_pct": 80,
        "color_name": "red",
    }
    assert delivered.status == 200
    assert msgspec.json.decode(delivered.response) == [
        {"entity_id": "light.kitchen", "state": "on"}
    ]


def test_fires_an_event() -> None:
    with serving(fake_home_assistant) as hass:
        options = {
            "url": hass.url,
            "token": TOKEN,
            "event": "omi_keyword",
            "data": {"phrase": "lights on", "uid": "user123"},
        }
        delivered = send(home_assistant, render(home_assistant, options))

    (request,) = hass.received
    assert request.path == "/api/events/omi_keyword"
    assert request.json() == {"phrase": "lights on", "uid": "user123"}
    assert delivered.response == '{"message": "Event omi_keyword fired."}'


def test_a_base_url_with_a_path_prefix_is_kept(target: TargetServer) -> None:
    options = {"url": f"{target.url}/ha/", "token": TOKEN, "service": "light.turn_on"}
    send(home_assistant, render(home_assistant, options))
    assert target.received[0].path == "/ha/api/services/light/turn_on"
    assert target.received[0].json() == {}


def test_a_wrong_token_is_a_permanent_401() -> None:
    with serving(fake_home_assistant) as hass:
        options = {"url": hass.url, "token": "wrong", "service": "light.turn_on"}
        with pytest.raises(DeliveryError) as caught:
            send(home_assistant, render(home_assistant, options))
    error = caught.value
    assert (error.status, error.message, error.retryable) == (401, "401: Unauthorized", False)
    assert error.connector == "home_assistant"


def test_an_unknown_service_carries_home_assistants_message() -> None:
    with serving(fake_home_assistant) as hass:
        options = {"url": hass.url, "token": TOKEN, "service": "light.turn_onn"}
        with pytest.raises(DeliveryError) as caught:
            send(home_assistant, render(home_assistant, options))
    assert caught.value.message == "Service light.turn_onn not found."
    assert caught.value.status == 400
    assert caught.value.retryable is False


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_hub_that_is_restarting_is_retryable(target: TargetServer, status: int) -> None:
    target.script(Reply(status, "Bad Gateway"))
    options = {"url": target.url, "token": TOKEN, "service": "light.turn_on"}
    with pytest.raises(DeliveryError) as caught:
        send(home_assistant, render(home_assistant, options))
    assert caught.value.retryable is True
    assert caught.value.message == "Bad Gateway"


def test_a_hub_that_is_off_is_retryable() -> None:
    options = {"url": f"http://127.0.0.1:{closed_port()}", "token": TOKEN, "event": "omi"}
    with pytest.raises(DeliveryError) as caught:
        send(home_assistant, render(home_assistant, options))
    assert caught.value.retryable is True
    assert caught.value.message.startswith("ConnectError:")


def test_a_slow_hub_times_out_retryably(target: TargetServer) -> None:
    target.script(Reply(200, [], delay=1.0))
    options = {"url": target.url, "token": TOKEN, "event": "omi", "timeout": 0.2}
    with pytest.raises(DeliveryError) as caught:
        send(home_assistant, render(home_assistant, options))
    assert caught.value.retryable is True
    assert caught.value.message.startswith("timed out after 0.2s")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "give service (like light.turn_on) or event, exactly one"),
        ({"service": "light.turn_on", "event": "x"}, "give service (like light.turn_on) or "),
        ({"service": "turn_on"}, "service 'turn_on' is not domain.service"),
    ],
)
def test_validate(options: dict[str, str], problem: str) -> None:
    decoded = msgspec.convert(
        {"url": "http://hub", "token": "t", **options}, home_assistant.Options
    )
    ((_field, message),) = home_assistant.validate(decoded)
    assert message.startswith(problem)


def test_an_event_type_that_would_change_the_path_fails_at_render() -> None:
    options = {"url": "http://hub:8123", "token": "t", "event": "../services/lock/unlock"}
    with pytest.raises(ValueError, match="has characters a URL path refuses"):
        render(home_assistant, options)
