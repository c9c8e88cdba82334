"""The editor's pages under /ui: the rules list, the rule editor, history with its traces,
dead letters. Server-rendered Jinja (autoescaped: payload text is always shown as text);
htmx swaps the fragments a list action returns; the rule editor itself runs on
web/static/editor.js over the JSON API.

Writes here go through the same functions as the JSON API (web.api_rules), and the access
middleware has already checked the session and its CSRF token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotFoundException
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect, Template
from msgspec import Struct

from engine.rules.folder_io import check_rule_id
from engine.rules.rule_files import RuleFolder, starters
from engine.server import history
from engine.server.outbox import purge_dead, retry_action
from engine.server.receiver import receiver_of
from engine.server.statuses import ActionStatus
from engine.triggers import default_triggers
from web.api_rules import _edit, rules_overview, starter_text

HISTORY_PAGE = 100


def page(
    name: FromPath[str], request: Request[Any, Any, Any], nav: str = "", **context: Any
) -> Template:
    """A page or fragment; `nav` names the menu entry it belongs to (base.html marks it)."""
    return Template(template_name=name, context={"request": request, "nav": nav, **context})


def ago(timestamp: float | None, now: float | None = None) -> str:
    """`3 min ago` style, for people reading a list."""
    if not timestamp:
        return "never"
    seconds = max(0, int((now or time.time()) - timestamp))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


# ---- rules list ----------------------------------------------------------------------------


async def rules_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    overview = await rules_overview(request)
    now = time.time()
    for rule in overview["rules"]:
        rule["last_fired_text"] = ago(rule["last_fired"], now)
    return overview


@get("/ui", summary="The rules list", include_in_schema=False)
async def rules_page(request: Request[Any, Any, Any]) -> Template:
    context = await rules_context(request)
    return page(
        "rules.html",
        request,
        nav="rules",
        starters=[{"name": s.name, "title": s.title} for s in starters()],
        **context,
    )


async def rules_table(request: Request[Any, Any, Any], notice: str = "") -> Template:
    context = await rules_context(request)
    return page("rules_table.html", request, notice=notice, **context)


async def list_action(
    request: Request[Any, Any, Any], change: Callable[[RuleFolder], Any], done: str = ""
) -> Template:
    """Run one change from the rules list and answer the table again, with what happened
    (htmx swaps only 2xx answers, so a refusal is shown in the table, not as an error)."""
    try:
        await _edit(request, change)
    except HTTPException as exc:
        return await rules_table(request, notice=str(exc.detail))
    return await rules_table(request, notice=done)


@post("/ui/rules/{rule_id:str}/toggle", status_code=200, include_in_schema=False)
async def toggle_rule(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> Template:
    rule = receiver_of(request).pipeline.rules.get(rule_id)
    if rule is None:
        return await rules_table(request, notice=f"no rule {rule_id}")
    enabled = not rule.enabled
    return await list_action(request, lambda f: f.set_enabled(rule_id, enabled))


@post("/ui/rules/{rule_id:str}/duplicate", status_code=200, include_in_schema=False)
async def duplicate_rule(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> Template:
    new_id = request.headers.get("hx-prompt", "").strip() or f"{rule_id}-copy"
    return await list_action(
        request, lambda f: f.duplicate(rule_id, new_id), f"duplicated {rule_id} as {new_id}"
    )


@post("/ui/rules/{rule_id:str}/rename", status_code=200, include_in_schema=False)
async def rename_rule(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> Template:
    new_id = request.headers.get("hx-prompt", "").strip()
    if not new_id or new_id == rule_id:
        return await rules_table(request)
    return await list_action(
        request, lambda f: f.rename(rule_id, new_id), f"renamed {rule_id} to {new_id}"
    )


@post("/ui/rules/{rule_id:str}/delete", status_code=200, include_in_schema=False)
async def delete_rule(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> Template:
    return await list_action(request, lambda f: f.delete(rule_id), f"deleted {rule_id}")


class NewRuleForm(Struct):
    starter: str = "blank"
    id: str = ""
    _csrf: str = ""


@post("/ui/rules/new", include_in_schema=False)
async def new_rule(
    request: Request[Any, Any, Any],
    data: Annotated[NewRuleForm, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    text = starter_text(data.starter)
    chosen = data.id.strip()

    def create(folder: RuleFolder) -> Any:
        # the id is written into the YAML text: checked first, so it stays one value
        return folder.create(with_id(text, check_rule_id(chosen)) if chosen else text)

    result = await _edit(request, create)
    return Redirect(f"/ui/rules/{result.rule_id}", status_code=303)


def with_id(text: str, rule_id: FromPath[str]) -> str:
    """A starter's text with its `id:` line set to the chosen id (the starter's own
    comments kept)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("id:"):
            lines[i] = f"id: {rule_id}\n"
            return "".join(lines)
    return f"id: {rule_id}\n{text}"


# ---- the editor ----------------------------------------------------------------------------


@get("/ui/rules/{rule_id:str}", include_in_schema=False)
async def editor_page(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> Template:
    return page(
        "editor.html",
        request,
        nav="rules",
        rule_id=rule_id,
        triggers=sorted(default_triggers().keys()),
    )


# ---- history -------------------------------------------------------------------------------


def history_rows(store: Any, trigger: str, rule: str, status: str) -> list[dict[str, Any]]:
    """Recent events, filtered by trigger, by a rule that fired, or by action status (in the
    query: an older match is found however many newer events do not match)."""
    events = history.list_events(
        store,
        limit=HISTORY_PAGE,
        trigger=trigger or None,
        fired=rule or None,
        status=status or None,
    )
    for event in events:
        event["fired"] = [d["rule"] for d in event["decisions"] if d.get("matched")]
    return events


async def history_context(
    request: Request[Any, Any, Any], trigger: str, rule: str, status: str
) -> dict[str, Any]:
    receiver = receiver_of(request)
    rows = await receiver.store.read(lambda s: history_rows(s, trigger, rule, status))
    now = time.time()
    for row in rows:
        row["ago"] = ago(row["received_at"], now)
    return {
        "events": rows,
        "filters": {"trigger": trigger, "rule": rule, "status": status},
        "triggers": sorted(default_triggers().keys()),
        "rule_ids": sorted(r.id for r in receiver.pipeline.rules.rules),
        "statuses": [s.value for s in ActionStatus] + ["error"],
    }


@get("/ui/history", include_in_schema=False)
async def history_page(
    request: Request[Any, Any, Any],
    trigger: FromQuery[str] = "",
    rule: FromQuery[str] = "",
    status: FromQuery[str] = "",
) -> Template:
    context = await history_context(request, trigger, rule, status)
    return page("history.html", request, nav="history", **context)


@get("/ui/history/rows", include_in_schema=False)
async def history_fragment(
    request: Request[Any, Any, Any],
    trigger: FromQuery[str] = "",
    rule: FromQuery[str] = "",
    status: FromQuery[str] = "",
) -> Template:
    """The table alone: what the history page's htmx polls every 2 s."""
    context = await history_context(request, trigger, rule, status)
    return page("history_rows.html", request, **context)


@get("/ui/events/{event_id:str}", include_in_schema=False)
async def event_page(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Template:
    event = await receiver_of(request).store.read(lambda s: history.event_detail(s, event_id))
    if event is None:
        raise NotFoundException(f"no event {event_id}")
    return page("event.html", request, event=event, ago=ago(event["received_at"]))


# ---- dead letters --------------------------------------------------------------------------


async def dead_context(request: Request[Any, Any, Any], notice: str = "") -> dict[str, Any]:
    dead = await receiver_of(request).store.read(
        lambda s: history.list_actions(s, status=ActionStatus.DEAD, limit=200)
    )
    now = time.time()
    for action in dead:
        action["ago"] = ago(action["updated_at"], now)
    return {"dead": dead, "notice": notice}


@get("/ui/dead-letters", include_in_schema=False)
async def dead_page(request: Request[Any, Any, Any]) -> Template:
    return page("dead_letters.html", request, nav="dead-letters", **await dead_context(request))


@post("/ui/dead-letters/{action_id:int}/retry", status_code=200, include_in_schema=False)
async def dead_retry(request: Request[Any, Any, Any], action_id: FromPath[int]) -> Template:
    receiver = receiver_of(request)
    retried = 0 < action_id < 2**63 and await asyncio.wrap_future(
        retry_action(receiver.store, action_id, time.time())
    )
    if retried:
        receiver.deliverer.wake.set()
    notice = f"action {action_id} is queued again" if retried else f"no dead action {action_id}"
    return page("dead_table.html", request, **await dead_context(request, notice))


@post("/ui/dead-letters/purge", status_code=200, include_in_schema=False)
async def dead_purge(request: Request[Any, Any, Any]) -> Template:
    purged = await asyncio.wrap_future(purge_dead(receiver_of(request).store))
    notice = f"purged {purged} dead letter(s)"
    return page("dead_table.html", request, **await dead_context(request, notice))


ROUTES = [
    rules_page,
    toggle_rule,
    duplicate_rule,
    rename_rule,
    delete_rule,
    new_rule,
    editor_page,
    history_page,
    history_fragment,
    event_page,
    dead_page,
    dead_retry,
    dead_purge,
]
