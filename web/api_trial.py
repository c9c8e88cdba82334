"""Trying a rule before it is live: the live test (dry-run), the backtest over captured
events, and "save as test case". Nothing here sends anything or touches the live rules.

The work runs in a worker thread (matching and rendering are bounded by the same budgets as
the webhooks), never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, post
from litestar.exceptions import ClientException
from litestar.params import FromPath, JSONBody
from msgspec import UNSET, Struct

from engine import backtest as backtesting
from engine import rule_tests
from engine.rules.compiled import RuleSet
from engine.rules.templates import Templates
from engine.server import history
from engine.server.receiver import receiver_of
from engine.trial import TrialResult, compile_candidate, try_rule
from web.payload_source import PayloadChoice, events_for

BACKTEST_EVENTS = 500


class DryRunBody(Struct, forbid_unknown_fields=True):
    """The rule (`text`, as in the YAML tab) and the payload to try it on."""

    text: str
    source: PayloadChoice


@post("/api/dry-run", summary="Try a rule's text on a payload, a sample or captured events")
async def api_dry_run(request: Request[Any, Any, Any], data: JSONBody[DryRunBody]) -> TrialResult:
    receiver = receiver_of(request)
    registry = receiver.live_rules.registry
    candidate = await asyncio.to_thread(compile_candidate, data.text, registry, Templates())
    trigger = data.source.trigger or (
        str(candidate.rules[0].trigger) if candidate.rules else "memory"
    )
    events = await events_for(data.source, receiver, trigger)
    return await asyncio.to_thread(
        try_rule,
        data.text,
        events,
        registry=registry,
        secrets=receiver.secrets,
        data_dir=receiver.settings.data_dir,
        allow_hosts=receiver.settings.outbound_allow_hosts,
        candidate=candidate,
    )


class BacktestBody(Struct, forbid_unknown_fields=True):
    """The edited rule's text; compared with the saved rule of the same id (or `rule_id`)."""

    text: str
    rule_id: str | None = None
    limit: int = BACKTEST_EVENTS
    since: float | None = None


@post("/api/backtest", summary="What an edited rule changes over the last captured events")
async def api_backtest(request: Request[Any, Any, Any], data: JSONBody[BacktestBody]) -> Any:
    receiver = receiver_of(request)
    candidate = await asyncio.to_thread(
        compile_candidate, data.text, receiver.live_rules.registry, Templates()
    )
    if not candidate.rules:
        raise ClientException("the rule has errors; fix them before a backtest")
    edited = candidate.rules[0]
    saved_id = data.rule_id or edited.id
    saved = receiver.pipeline.rules.get(saved_id)
    limit = max(1, min(data.limit, 5000))
    since = data.since
    trigger = edited.trigger
    events = await receiver.store.read(
        lambda s: history.recent_events(s, trigger=trigger, since=since, limit=limit)
    )
    report = await asyncio.to_thread(
        backtesting.backtest,
        events,
        RuleSet(rules=[saved] if saved else []),
        RuleSet(rules=[edited]),
        secrets=receiver.secrets,
        only_rule=edited.id,
        data_dir=receiver.settings.data_dir,
        allow_hosts=receiver.settings.outbound_allow_hosts,
    )
    return msgspec.to_builtins(report)


class CaseBody(Struct, forbid_unknown_fields=True):
    """A test case for `rule_id`, pinned to what the saved rule does now on the source."""

    name: str
    source: PayloadChoice


def case_source(choice: PayloadChoice) -> dict[str, Any]:
    """The payload choice as a test case names it (rules/<name>.test.yaml)."""
    if choice.payload is not UNSET:
        return {"payload": choice.payload}
    if choice.sample:
        return {"sample": choice.sample}
    if choice.event_id:
        return {"event": choice.event_id}
    raise ClientException("choose a payload: payload, sample or event_id")


@post("/api/rules/{rule_id:str}/cases", status_code=201, summary="Save a live test as a test case")
async def api_add_case(
    request: Request[Any, Any, Any], rule_id: FromPath[str], data: JSONBody[CaseBody]
) -> Any:
    receiver = receiver_of(request)
    rules_dir = receiver.settings.rules
    source = case_source(data.source)

    def suggest(store: Any) -> dict[str, Any]:
        return rule_tests.suggest_case(
            rules_dir, rule_id, data.name, source, store=store, rules=receiver.pipeline.rules
        )

    try:
        case = await receiver.store.read(suggest)
        path = await asyncio.to_thread(rule_tests.add_case, rules_dir, rule_id, case)
    except rule_tests.RuleTestError as exc:
        raise ClientException(str(exc)) from None
    return {"file": path.name, "case": case}


ROUTES = [api_dry_run, api_backtest, api_add_case]
