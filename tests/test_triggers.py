"""engine.triggers: a trigger is one definition, and a new one works end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from engine.config import BodyLimits
from engine.errors import PayloadError
from engine.rules.schema import rule_file_schema
from engine.runtime.payloads import Event, decode_event
from engine.triggers import Trigger, TriggerRegistry, default_triggers
from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.wait import wait_until


def decode_photo(body: bytes, uid: str, query: Mapping[str, Any]) -> Event:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise PayloadError("not JSON", trigger="photo") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("caption"), str):
        raise PayloadError("missing 'caption'", trigger="photo")
    return Event("photo", uid, doc, id=str(doc.get("id") or ""))


PHOTO = Trigger(
    name="photo",
    endpoint="/webhook/photo",
    summary="A photo with its caption",
    decode=decode_photo,
    template_names=frozenset({"photo"}),
    aliases=lambda view: {"photo": view.doc},
    spoken=lambda doc: [{"text": doc["caption"], "is_user": True}],
    dedupe_id=lambda doc: str(doc["id"]) if doc.get("id") else None,
)


@pytest.fixture
def photo() -> Iterator[Trigger]:
    triggers = default_triggers()
    triggers.register(PHOTO)
    try:
        yield PHOTO
    finally:
        triggers.unregister(PHOTO.name)


def test_the_built_ins_are_registered_in_order() -> None:
    assert list(default_triggers()) == [
        "memory",
        "transcript",
        "audio",
        "day_summary",
        "transcript_session_end",
        "audio_speech_start",
        "audio_speech_end",
    ]
    assert default_triggers()["day_summary"].endpoint == "/webhook/day-summary"


def test_a_derived_trigger_has_no_webhook_route(tmp_path: Path) -> None:
    session_end = default_triggers()["transcript_session_end"]
    assert session_end.derived and session_end.endpoint == ""
    assert "transcript_session_end" not in [t.name for t in default_triggers().webhooks()]
    with LiveServer(server_settings(tmp_path)) as server:
        for path in ("/webhook/transcript_session_end", "/webhook/transcript-session-end", "/"):
            answer = httpx.post(f"{server.url}{path}?uid=u", json={"segments": []})
            assert answer.status_code in (404, 405), path


def test_the_body_limits_setting_defaults_to_the_definitions() -> None:
    defaults = BodyLimits()
    for trigger in default_triggers().webhooks():  # a derived trigger is not posted
        assert getattr(defaults, trigger.name) == trigger.body_limit, trigger.name


def test_a_name_is_registered_once() -> None:
    registry = TriggerRegistry([PHOTO])
    with pytest.raises(ValueError, match="trigger 'photo' is already registered"):
        registry.register(PHOTO)


def test_a_registered_trigger_decodes_and_appears_in_the_schema(photo: Trigger) -> None:
    event = decode_event("photo", b'{"caption": "a cat"}', uid="u")
    assert (event.trigger, event.doc) == ("photo", {"caption": "a cat"})
    schema = rule_file_schema()
    assert "photo" in schema["$defs"]["Rule"]["properties"]["trigger"]["enum"]


def test_a_new_trigger_is_one_definition(tmp_path: Path, photo: Trigger) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
        - id: caption
          trigger: photo
          when: [{keywords: cat}]
          do: [{log: {message: "{{ photo.caption }}"}}]
        """,
    )
    log_file = Path(settings.data_dir) / "actions.jsonl"
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        body = {"id": "p1", "caption": "a cat on the sofa"}
        answer = client.post("/webhook/photo", params={"uid": "u"}, json=body)
        assert answer.status_code == 200, answer.text
        repeat = client.post("/webhook/photo", params={"uid": "u"}, json=body)
        assert repeat.status_code == 200  # the same photo id: recognized as a repeat
        wrong = client.post("/webhook/photo", params={"uid": "u"}, json={"id": "p2"})
        assert wrong.status_code == 400
        events = client.get("/api/events", params={"trigger": "photo"}, headers=ADMIN).json()
        # newest first: the repeat is recorded as such, the first one was processed
        assert [(event["trigger"], event["status"]) for event in events] == [
            ("photo", "duplicate"),
            ("photo", "processed"),
        ]
        detail = client.get(f"/api/events/{events[1]['id']}", headers=ADMIN).json()
        assert detail["payload"] == body
        lines = wait_until(lambda: log_file.exists() and log_file.read_text().splitlines())
    assert [json.loads(line)["message"] for line in lines] == ["a cat on the sofa"]
