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
