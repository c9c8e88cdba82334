"""notify: the message rides in the webhook response; sending does nothing."""

from __future__ import annotations

import msgspec
import pytest

from connectors.notify import connector as notify
from tests.connectors.helpers import render, send
from tests.servers import TargetServer


def test_render_returns_the_message_trimmed() -> None:
    request = render(notify, {"message": "  Remember: call Dana at 5 \n"})
    assert request == notify.Request("Remember: call Dana at 5")
    assert msgspec.to_builtins(request) == {"message": "Remember: call Dana at 5"}


def test_notify_is_inline() -> None:
    assert notify.inline is True


def test_send_is_a_no_op_that_reports_delivery(target: TargetServer) -> None:
    delivered = send(notify, render(notify, {"message": "Hi"}))
    assert delivered.status == 200
    assert delivered.response == "returned in the webhook response"
    assert target.received == []  # nothing went over the network


def test_message_is_required() -> None:
    with pytest.raises(msgspec.ValidationError, match="missing required field `message`"):
        render(notify, {})


def test_validate_warns_where_omi_never_shows_the_message(tmp_path) -> None:
    from tests.helpers import load_ok

    ruleset = load_ok(
        tmp_path,
        """
        - id: summary-reply
          trigger: day_summary
          do: [{notify: {message: "Your day is summarized"}}]
        - id: audio-reply
          trigger: audio
          do: [{notify: {message: "Heard you"}}]
        - id: too-short
          trigger: transcript
          do: [{notify: {message: "ok!"}}]
        - id: fine
          trigger: transcript
          do: [{notify: {message: "Turning on the lights"}}]
        - id: templated
          trigger: memory
          do: [{notify: {message: "{{ memory.structured.title }}"}}]
        """,
    )
    warnings = [str(w) for w in ruleset.warnings]
    assert [w.split(": rule ")[1].split(":")[0] for w in warnings] == [
        "summary-reply",
        "audio-reply",
        "too-short",
    ]
    assert "Omi does not read the answer to a day_summary webhook" in warnings[0]
    assert "'ok!' is under 6 characters" in warnings[2]
    assert [r.id for r in ruleset.rules] == [
        "summary-reply",
        "audio-reply",
        "too-short",
        "fine",
        "templated",
    ]
