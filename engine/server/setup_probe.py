"""The setup page's "test" button: one harmless request per connector (Connector.probe),
made with the user's settings, through the guard of deliveries that read a per-user setting
(Deliverer.user_guard: loopback and private addresses only for outbound_allow_hosts), after
the check a planned action gets (a host not named by the rule, a server secret, the allow
list or the user's own URL settings is refused, as engine.runtime.planner refuses it).

The connector's options are those of the first action (of a rule applying to the user)
that reads a per-user setting; each option is rendered with the user's settings and the
server's secrets. An option whose template needs an event (`memory.structured.title`) is
left at its default: a test has no event. A successful test shows only "works" and the
HTTP status (a Notion database's JSON is not for whoever knows the uid); a failed one shows
the service's answer, the user's secrets masked.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from engine.connector import Probe, SendEnv, probe_of
from engine.errors import DeliveryError, OmiRulesError
from engine.outbound import make_client
from engine.rules.compiled import CompiledAction, CompiledRule
from engine.rules.trust import refusal
from engine.rules.user_setup import applying_rules
from engine.runtime.destinations import host_of
from engine.runtime.pipeline import user_hosts
from engine.runtime.user_values import UserValues
from engine.server.receiver import Receiver


def probed_action(
    rules: list[CompiledRule], connector: str
) -> tuple[CompiledRule, CompiledAction] | None:
    for rule in rules:
        for action in rule.actions:
            if action.name == connector and rule.action_settings.get(action.index):
                return rule, action
    return None


def probe_options(
    receiver: Receiver, rule: CompiledRule, action: CompiledAction, user: UserValues
) -> msgspec.Struct:
    """The action's options rendered for a test (ValidationError when they cannot be)."""
    context: dict[str, Any] = {
        "uid": user.uid,
        "user": user.template_view(),
        "secrets": receiver.secrets.view(placeholders=False),
        "rule": rule.context(),
        "now": datetime.fromtimestamp(time.time(), UTC),
        "event": {},
    }
    templates = receiver.pipeline.templates
    rendered = {}
    for key, value in msgspec.to_builtins(action.options).items():
        try:
            rendered[key] = templates.render_value(value, context, rule_id=rule.id, field=key)
        except OmiRulesError:
            continue  # needs an event: the option's default stands in
    options: msgspec.Struct = msgspec.convert(rendered, action.connector.Options)
    return options


async def probe_connector(receiver: Receiver, uid: str, connector: str) -> Probe:
    """Test `connector` with `uid`'s settings; the answer has the user's secrets masked."""
    rules = applying_rules(receiver.pipeline.rules, uid, receiver.secrets)
    found = probed_action(rules, connector)
    if found is None:
        return Probe(ok=False, answer=f"no rule of this app sends to {connector} for you")
    rule, action = found
    probe = probe_of(action.connector)
    if probe is None:
        return Probe(ok=False, answer=f"{connector} has no test request")
    user = await receiver.store.read(lambda _store: receiver.user_settings.values(uid))
    missing = user.missing(rule.action_settings[action.index])
    if missing:
        return Probe(ok=False, answer=f"set {', '.join(missing)} first")
    try:
        options = probe_options(receiver, rule, action, user)
    except msgspec.ValidationError as exc:
        return Probe(ok=False, answer=f"cannot test: {exc}")
    guard = receiver.deliverer.user_guard
    planned = receiver.pipeline.trust().including(rule.trusted_hosts | user_hosts(rule, user))

    async def check(url: str) -> None:
        host = host_of(url)
        if host is not None and not planned(host):
            raise DeliveryError(refusal(host), connector=connector, url=url)
        await guard.check(url, connector)

    deadline = receiver.settings.delivery_deadline
    async with make_client(guard) as client:
        env = SendEnv(
            client=client,
            secret=user.secrets.lookup(placeholders=False),
            guard=check,
            data_dir=receiver.settings.data_dir,
        )
        try:
            async with asyncio.timeout(deadline):
                result = await probe(options, env)
        except TimeoutError:
            result = Probe(ok=False, answer=f"no answer within {deadline:g}s")
        except (OmiRulesError, ValueError) as exc:
            result = Probe(ok=False, answer=str(exc))
    if result.ok:  # what a service answers on success (a Notion database) is not shown
        return Probe(ok=True, status=result.status, answer="")
    answer: str = user.secrets.mask(result.answer)
    return Probe(ok=result.ok, status=result.status, answer=answer)
