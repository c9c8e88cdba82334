"""Turn a fired rule into exact requests: templates rendered, then the connector renders.

Each `do:` item runs once, or once per `for_each` item. A template or render failure becomes
that action's error (shown by dry-run, stored in history); the other actions still plan.
Any other failure while planning one action (a bug in a connector's render) is that
action's error too, never the whole event's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from engine.connector import RenderEnv, destination_of, inline_reply_of, order_key_of
from engine.errors import DeliveryError, TemplateError
from engine.rules.compiled import CompiledAction
from engine.rules.trust import refusal
from engine.runtime.destinations import host_of, target_key
from engine.runtime.event_view import EventView
from engine.runtime.matcher import Decision
from engine.runtime.user_values import SettingsReads, reads_of

log = logging.getLogger("omi_rules.planner")


@dataclass
class PlannedAction:
    rule_id: str
    action_index: int
    item_index: int | None
    connector: str
    request: msgspec.Struct | None = None
    error: str | None = None
    inline: bool = False
    reply: str | None = None  # the connector's inline reply: rides in the webhook answer
    target: str = ""  # where it goes (engine.runtime.destinations.target_key): limits and breaker
    # it reads a per-user setting: the user may have chosen where it goes, so it is sent
    # through the guard that trusts outbound_allow_hosts only (engine.server.delivery)
    user_chosen: bool = False

    @property
    def key_suffix(self) -> str:
        """Stable within an event: rule, action and for_each item."""
        item = "" if self.item_index is None else f":{self.item_index}"
        return f"{self.rule_id}:{self.action_index}{item}"


def plan_actions(
    decision: Decision,
    view: EventView,
    *,
    secret: Any,
    has_secret: Any,
    data_dir: str,
    trusted: Callable[[str], bool] | None = None,
) -> list[PlannedAction]:
    """The actions of a fired rule; with `trusted`, an action to a host it does not trust
    (a host taken from payload text) becomes that action's error and is never sent."""
    rule = decision.rule
    base = {**view.context(), "rule": rule.context()}
    if decision.hit is not None:
        base["match"] = decision.hit.as_context()
    items: list[tuple[int | None, Any]] = (
        [(None, None)] if decision.items is None else list(enumerate(decision.items))
    )
    env = RenderEnv(
        secret=secret,
        has_secret=has_secret,
        data_dir=data_dir,
        event_id=view.event.id,
        uid=view.event.uid,
        session_id=view.event.session_id,
        rule_id=rule.id,
        received_at=view.event.received_at,
        event=view.doc,
    )
    planned = []
    user = base.get("user")
    settings = user.get("settings") if isinstance(user, dict) else None
    counted = settings if isinstance(settings, SettingsReads) else None
    for item_index, item in items:
        context = base if item_index is None else {**base, "item": item}
        for action in rule.actions:
            before = reads_of(counted) if counted is not None else 0
            one = _plan_one(action, rule.id, item_index, context, view, env, trusted)
            # it read a per-user setting, by name or any other way: the user guard sends it
            read = counted is not None and reads_of(counted) > before
            one.user_chosen = read or bool(rule.action_settings.get(action.index))
            planned.append(one)
    return planned


def _plan_one(
    action: CompiledAction,
    rule_id: str,
    item_index: int | None,
    context: dict[str, Any],
    view: EventView,
    env: RenderEnv,
    trusted: Callable[[str], bool] | None,
) -> PlannedAction:
    connector = action.connector
    result = PlannedAction(
        rule_id, action.index, item_index, connector.name, inline=connector.inline
    )
    autoescape = connector.autoescape_fields
    try:
        raw = msgspec.to_builtins(action.options)
        rendered = {
            key: view.templates.render_value(
                value,
                context,
                autoescape=lambda field: field.split(".")[0] in autoescape,
                rule_id=rule_id,
                field=key,
            )
            for key, value in raw.items()
        }
        options = msgspec.convert(rendered, connector.Options)
        request = connector.render(options, env)
        destination = destination_of(connector, request)
        host = host_of(destination)
        if trusted is not None and host is not None and not trusted(host):
            result.error = f"do[{action.index}].{connector.name}: {refusal(host)}"
            return result
        order = order_key_of(connector, request)
        # one target per ordered file: delivery sends its actions one at a time, in order
        result.target = (
            f"{connector.name}@{order}" if order else target_key(connector.name, destination)
        )
        result.request = request
        result.reply = inline_reply_of(connector, request)
    except TemplateError as exc:
        result.error = f"do[{action.index}].{connector.name}.{exc.field}: {exc.message}"
    except (msgspec.ValidationError, ValueError, TypeError, DeliveryError) as exc:
        result.error = f"do[{action.index}].{connector.name}: {exc}"
    except Exception as exc:  # one action's failure must not fail the event
        log.exception("planning rule %s do[%d] failed", rule_id, action.index)
        result.error = f"do[{action.index}].{connector.name}: {type(exc).__name__}: {exc}"
    return result
