"""The `omi` connector against a loopback fake of Omi's Import and Developer APIs
(tests/omi_server.py), which checks the bearer token, the app id in the path, the uid and
message in the query and the JSON bodies the way Omi's backend does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from connectors.omi import connector as omi
from engine.connector import RenderEnv
from engine.dryrun import report
from engine.errors import DeliveryError
from engine.report_text import format_report
from engine.rules.loader import load_rules
from engine.runtime.pipeline import Pipeline
from engine.secrets import Secrets
from engine.server.app import create_app
from tests.conftest import fixture_path
from tests.connectors.helpers import render, send
from tests.connectors.services import serving
from tests.helpers import event, memory, write_rule
from tests.omi_server import APP_ID, APP_SECRET, DEV_KEY, DEV_UID, FakeOmi
from tests.server_helpers import admin_client, server_settings, write_rules
from tests.servers import Reply, TargetServer

APP_SECRETS = {"OMI_APP_ID": APP_ID, "OMI_APP_SECRET": APP_SECRET}
DEV_SECRETS = {"OMI_DEV_KEY": DEV_KEY}


def deliver(
    fake: FakeOmi, options: dict[str, Any], secrets: dict[str, str], uid: str = "user-1"
) -> Any:
    """Render `options` for an event of `uid` with OMI_API_URL pointing at the fake; send."""
    with serving(fake.respond) as api:
        secrets = {**secrets, "OMI_API_URL": api.url}
        request = render(omi, options, secrets=secrets, uid=uid)
        return send(omi, request, secrets=secrets)


def test_a_notification_goes_to_the_events_uid_with_the_app_secret() -> None:
    fake = FakeOmi()
    done = deliver(
        fake, {"action": "notification", "message": " Saved: launch & plan? "}, APP_SECRETS
    )
    assert fake.notifications == [{"uid": "user-1", "message": "Saved: launch & plan?"}]
    assert done.status == 200
    assert msgspec.json.decode(done.response) == {"status": "Ok"}


def test_a_notification_request_is_a_post_with_its_query_and_no_body() -> None:
    request = render(
        omi,
        {"action": "notification", "message": "hi there", "uid": "other"},
        secrets=APP_SECRETS,
        uid="user-1",
    )
    assert request.method == "POST"
    assert request.url == f"https://api.omi.me/v2/integrations/{APP_ID}/notification"
    assert request.query == {"uid": "other", "message": "hi there"}
    assert request.headers == {"Authorization": f"Bearer {APP_SECRET}"}
    assert not msgspec.to_builtins(request).keys() & {"json", "form", "body"}


def test_a_conversation_is_imported_with_omis_fields() -> None:
    fake = FakeOmi()
    options = {
        "action": "create_conversation",
        "text": "We agreed to ship on Friday.",
        "text_source": "message",
        "text_source_spec": "omi-rules",
        "started_at": "2026-11-26T09:00:00+00:00",
        "finished_at": "2026-11-26T09:05:00+00:00",
        "language": "en",
        "geolocation": {"latitude": "52.52", "longitude": 13.405, "address": "Berlin"},
    }
    deliver(fake, options, APP_SECRETS)
    assert fake.conversations == [
        {
            "uid": "user-1",
            "text": "We agreed to ship on Friday.",
            "text_source": "message",
            "text_source_spec": "omi-rules",
            "started_at": "2026-11-26T09:00:00+00:00",
            "finished_at": "2026-11-26T09:05:00+00:00",
            "language": "en",
            "geolocation": {"latitude": 52.52, "longitude": 13.405, "address": "Berlin"},
        }
    ]


def test_memories_are_imported_as_text_and_explicit_facts() -> None:
    fake = FakeOmi()
    options = {
        "action": "create_memories",
        "text": "Dana prefers tea.",
        "text_source": "other",
        "memories": ["Dana prefers tea", {"content": "Lee is vegan ", "tags": ["food"]}, "  "],
    }
    deliver(fake, options, APP_SECRETS)
    assert fake.memories == [
        {
            "uid": "user-1",
            "text": "Dana prefers tea.",
            "text_source": "other",
            "memories": [
                {"content": "Dana prefers tea", "tags": []},
                {"content": "Lee is vegan", "tags": ["food"]},
            ],
        }
    ]


def test_explicit_memories_alone_still_send_omis_required_text_key() -> None:
    fake = FakeOmi()
    deliver(fake, {"action": "create_memories", "memories": ["Dana prefers tea"]}, APP_SECRETS)
    assert fake.memories == [
        {"uid": "user-1", "text": "", "memories": [{"content": "Dana prefers tea", "tags": []}]}
    ]


def test_a_developer_key_creates_one_memory() -> None:
    fake = FakeOmi()
    options = {
        "action": "create_memories",
        "via": "dev",
        "memories": [{"content": "Likes early meetings", "tags": ["work"], "category": "manual"}],
    }
    done = deliver(fake, options, DEV_SECRETS, uid="")
    assert fake.memories == [
        {"uid": DEV_UID, "content": "Likes early meetings", "tags": ["work"], "category": "manual"}
    ]
    assert msgspec.json.decode(done.response)["id"] == "mem-1"


def test_several_developer_memories_go_in_one_batch_and_long_ones_are_cut_to_500() -> None:
    fake = FakeOmi()
    options = {"action": "create_memories", "via": "dev", "memories": ["first", "x" * 600]}
    request = render(omi, options, secrets=DEV_SECRETS)
    assert request.url == "https://api.omi.me/v1/dev/user/memories/batch"
    deliver(fake, options, DEV_SECRETS)
    assert [item["content"] for item in fake.memories] == ["first", "x" * 499 + "…"]


def test_a_developer_key_creates_an_action_item() -> None:
    fake = FakeOmi()
    options = {
        "action": "create_action_item",
        "description": "Call the plumber",
        "due_at": "2026-11-27T09:00:00+00:00",
    }
    deliver(fake, options, DEV_SECRETS)
    assert fake.action_items == [
        {
            "uid": DEV_UID,
            "description": "Call the plumber",
            "completed": False,
            "due_at": "2026-11-27T09:00:00+00:00",
        }
    ]


def test_a_developer_key_creates_a_conversation_at_the_dev_path() -> None:
    fake = FakeOmi()
    options = {"action": "create_conversation", "via": "dev", "text": "Notes from standup"}
    deliver(fake, options, DEV_SECRETS)
    assert fake.conversations == [{"uid": DEV_UID, "text": "Notes from standup"}]


def test_the_options_name_the_app_and_key_when_given() -> None:
    request = render(
        omi,
        {"action": "notification", "message": "hello", "app_id": "other-app", "app_secret": "s2"},
        uid="u",
    )
    assert request.url == "https://api.omi.me/v2/integrations/other-app/notification"
    assert request.headers == {"Authorization": "Bearer s2"}
    options = msgspec.convert({"action": "notification", "message": "x"}, omi.Options)
    assert omi.required_secrets(options) == {"OMI_APP_ID", "OMI_APP_SECRET"}
    dev = msgspec.convert({"action": "create_action_item", "description": "x"}, omi.Options)
    assert omi.required_secrets(dev) == {"OMI_DEV_KEY"}


def test_api_url_option_wins_over_the_secret() -> None:
    options = {"action": "notification", "message": "hello", "api_url": "https://omi.home.lan/"}
    secrets = {**APP_SECRETS, "OMI_API_URL": "https://elsewhere.example"}
    request = render(omi, options, secrets=secrets, uid="u")
    assert request.url == f"https://omi.home.lan/v2/integrations/{APP_ID}/notification"


def test_a_wrong_app_secret_is_refused_permanently() -> None:
    fake = FakeOmi()
    with pytest.raises(DeliveryError) as caught:
        deliver(
            fake,
            {"action": "notification", "message": "hello"},
            {**APP_SECRETS, "OMI_APP_SECRET": "nope"},
        )
    assert (caught.value.status, caught.value.message) == (403, "Invalid API key")
    assert caught.value.retryable is False
    assert caught.value.connector == "omi"
    assert fake.notifications == []


def test_a_wrong_app_id_in_the_path_is_refused() -> None:
    fake = FakeOmi()
    with pytest.raises(DeliveryError) as caught:
        deliver(
            fake,
            {"action": "notification", "message": "hello"},
            {**APP_SECRETS, "OMI_APP_ID": "someone-else"},
        )
    assert caught.value.status == 403


def test_a_user_without_the_app_is_refused_with_omis_reason() -> None:
    fake = FakeOmi()
    with pytest.raises(DeliveryError) as caught:
        deliver(fake, {"action": "create_memories", "text": "x"}, APP_SECRETS, uid="stranger")
    assert caught.value.message == "App is not enabled for this user"
    assert caught.value.retryable is False


def test_a_wrong_developer_key_is_unauthorized() -> None:
    fake = FakeOmi()
    with pytest.raises(DeliveryError) as caught:
        deliver(
            fake,
            {"action": "create_action_item", "description": "x"},
            {"OMI_DEV_KEY": "omi_dev_wrong"},
        )
    assert (caught.value.status, caught.value.message) == (401, "Invalid API key")


def test_omis_rate_limit_is_retryable_after_its_retry_after() -> None:
    fake = FakeOmi(notifications_per_hour=1)
    deliver(fake, {"action": "notification", "message": "one"}, APP_SECRETS)
    with pytest.raises(DeliveryError) as caught:
        deliver(fake, {"action": "notification", "message": "two"}, APP_SECRETS)
    error = caught.value
    assert error.status == 429
    assert error.message == "Rate limit exceeded. Maximum 1 notifications per hour."
    assert error.retryable is True
    assert error.retry_after == 1800.0


def test_a_validation_error_names_omis_fields() -> None:
    fake = FakeOmi()
    options = {
        "action": "create_memories",
        "via": "dev",
        "memories": [{"content": "x", "category": "food"}],
    }
    with pytest.raises(DeliveryError) as caught:
        deliver(fake, options, DEV_SECRETS)
    assert caught.value.status == 422
    assert caught.value.message == (
        "body.category: Input should be 'interesting', 'system' or 'manual'"
    )
    assert caught.value.retryable is False


def test_a_failing_omi_is_retryable(target: TargetServer) -> None:
    target.script(Reply(503, {"detail": "Service Unavailable"}))
    secrets = {**APP_SECRETS, "OMI_API_URL": target.url}
    request = render(omi, {"action": "notification", "message": "hello"}, secrets=secrets, uid="u")
    with pytest.raises(DeliveryError) as caught:
        send(omi, request)
    assert caught.value.retryable is True
    assert caught.value.message == "Service Unavailable"
    assert caught.value.url == f"{target.url}/v2/integrations/{APP_ID}/notification"


def test_a_slow_omi_times_out_retryably(target: TargetServer) -> None:
    target.script(Reply(200, {}, delay=1.0))
    options = {"action": "notification", "message": "hello", "timeout": 0.2}
    secrets = {**APP_SECRETS, "OMI_API_URL": target.url}
    with pytest.raises(DeliveryError) as caught:
        send(omi, render(omi, options, secrets=secrets, uid="u"))
    assert caught.value.retryable is True
    assert "timed out" in caught.value.message


def test_an_event_without_a_uid_cannot_be_sent_through_an_app() -> None:
    with pytest.raises(ValueError, match="no uid to send to"):
        render(omi, {"action": "notification", "message": "hello"}, secrets=APP_SECRETS, uid="")


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"action": "notification"}, ("message", "notification needs message")),
        (
            {"action": "notification", "message": "hi", "via": "dev"},
            ("via", "notification goes through an app (via: app) only"),
        ),
        (
            {"action": "create_action_item", "description": "x", "via": "app"},
            ("via", "create_action_item goes through the Developer API (via: dev) only"),
        ),
        (
            {"action": "notification", "message": "hi", "text": "x"},
            ("text", "text is not an option of action notification"),
        ),
        ({"action": "create_conversation"}, ("text", "create_conversation needs text")),
        (
            {"action": "create_conversation", "text": "x", "text_source": "email"},
            ("text_source", "'email' is not one of audio_transcript, message, other_text"),
        ),
        (
            {"action": "create_memories"},
            ("", "create_memories needs text (Omi extracts memories) or memories"),
        ),
        (
            {"action": "create_memories", "via": "dev", "text": "x"},
            ("text", "via dev Omi does not extract memories from text: give memories"),
        ),
        (
            {"action": "create_memories", "via": "dev", "memories": ["m"] * 26},
            ("memories", "at most 25 memories in one action"),
        ),
        (
            {"action": "create_memories", "memories": [{"content": "m", "category": "manual"}]},
            ("memories", "category is a Developer API field (via: dev)"),
        ),
        (
            {"action": "create_action_item", "description": "x", "uid": "u"},
            ("uid", "via dev the key names the user: give no uid"),
        ),
    ],
)
def test_validate_names_what_is_wrong(options: dict[str, Any], problem: tuple[str, str]) -> None:
    decoded = msgspec.convert(options, omi.Options)
    assert omi.validate(decoded) == [problem]


def test_a_templated_text_source_is_left_to_omi() -> None:
    options = {"action": "create_conversation", "text": "x", "text_source": "{{ source }}"}
    assert omi.validate(msgspec.convert(options, omi.Options)) == []


def test_a_rule_talks_back_to_omi_through_the_server(tmp_path: Path) -> None:
    """Through the receiver, planner and delivery: OMI_API_URL names the loopback Omi, so
    its host is trusted; the notification goes to the webhook's uid."""
    fake = FakeOmi()
    with serving(fake.respond) as api:
        secrets_file = tmp_path / "secrets.env"
        secrets_file.write_text(
            f"OMI_APP_ID={APP_ID}\nOMI_APP_SECRET={APP_SECRET}\nOMI_API_URL={api.url}\n"
        )
        settings = server_settings(tmp_path, secrets=str(secrets_file))
        write_rules(
            Path(settings.rules),
            """
            - id: talk-back
              trigger: memory
              do:
                - omi:
                    action: notification
                    message: "Saved {{ memory.structured.title }}"
                - omi:
                    action: create_memories
                    memories: ["Worked on {{ memory.structured.title }}"]
            """,
        )
        with admin_client(create_app(settings)) as client:
            response = client.post(
                "/webhook/memory?uid=user-1",
                content=fixture_path("memory-work.json").read_bytes(),
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200
            api.wait_for(2)
    title = json.loads(fixture_path("memory-work.json").read_text())["structured"]["title"]
    assert fake.notifications == [{"uid": "user-1", "message": f"Saved {title}"}]
    assert fake.memories == [
        {"uid": "user-1", "text": "", "memories": [{"content": f"Worked on {title}", "tags": []}]}
    ]


def test_dry_run_shows_the_call_with_the_app_id_and_secret_masked(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        """
        - id: talk-back
          trigger: memory
          do:
            - omi: {action: notification, message: "Saved {{ memory.structured.title }}"}
        """,
    )
    secrets = Secrets(APP_SECRETS)
    outcome = Pipeline(load_rules(tmp_path), secrets, dry_run=True).process(
        event("memory", memory(), uid="user-1")
    )
    text = format_report(report(outcome, secrets), "memory.json")
    assert "POST https://api.omi.me/v2/integrations/<secret:OMI_APP_ID>/notification" in text
    assert "Authorization: Bearer <secret:OMI_APP_SECRET>" in text
    assert '"message": "Saved Launch planning"' in text
    assert APP_ID not in text and APP_SECRET not in text


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"action": "notification", "message": "  "}, "message"),
        ({"action": "create_conversation", "text": "\n"}, "text"),
        ({"action": "create_action_item", "description": " "}, "description"),
    ],
)
def test_a_text_that_renders_empty_is_not_sent(options: dict[str, Any], name: str) -> None:
    """What a template rendered reaches render unchecked: a blank call is refused there."""
    decoded = msgspec.convert(options, omi.Options)
    env = RenderEnv(
        secret=Secrets({**APP_SECRETS, **DEV_SECRETS}).get, has_secret=lambda _: False, uid="u"
    )
    with pytest.raises(ValueError, match=f"^{name} rendered empty: nothing to send$"):
        omi.render(decoded, env)
