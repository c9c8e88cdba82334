"""The rules as the editor reads and writes them: list (with 24 h counts), read, save, create
from a starter, enable/disable, duplicate, rename, delete; and the two conversions between
the builder's model and the YAML text.

Files stay the source of truth: every write goes through engine.rules.rule_files (round-trip
YAML, atomic, refused when the file changed since it was read), then the live rules reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, TypeVar

import msgspec
from litestar import Request, delete, get, post, put
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import FromPath, JSONBody
from msgspec import Struct

from engine.errors import BadRuleName, RuleConflict, RuleNotFound
from engine.rules.rule_files import (
    RuleFolder,
    RuleSource,
    SaveResult,
    merge_model,
    parse_rule,
    starters,
)
from engine.rules.rule_yaml import EditError
from engine.server import history
from engine.server.receiver import Receiver, receiver_of

T = TypeVar("T")
DAY = 24 * 3600


def rule_folder(request: Request[Any, Any, Any]) -> RuleFolder:
    """The server's one RuleFolder (engine.server.app makes it): its lock puts the editor's
    writes in a row."""
    folder: RuleFolder = request.app.state.rule_folder
    return folder


async def _in_folder(
    request: Request[Any, Any, Any], call: Callable[[RuleFolder], T], *, reload: bool
) -> T:
    """Run `call` on the rules folder in a worker thread (library errors become 4xx
    answers); after a write, reload the live rules at once, not waiting for the watcher."""
    folder, receiver = rule_folder(request), receiver_of(request)
    try:
        result = await asyncio.to_thread(call, folder)
    except RuleNotFound as exc:
        raise NotFoundException(str(exc)) from None
    except BadRuleName as exc:
        raise ClientException(str(exc)) from None
    except RuleConflict as exc:  # the page offers the file as it is now
        raise HTTPException(
            str(exc), status_code=409, extra={"etag": exc.etag, "text": exc.text}
        ) from None
    if reload:
        await asyncio.to_thread(receiver.live_rules.reload)
    return result


async def _edit(request: Request[Any, Any, Any], change: Callable[[RuleFolder], T]) -> T:
    """A write to the rules folder, then the live rules follow."""
    return await _in_folder(request, change, reload=True)


def rule_rows(receiver: Receiver, stats: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for rule in receiver.pipeline.rules.rules:
        counts = stats.get(rule.id, {})
        rows.append(
            {
                "id": rule.id,
                "trigger": rule.trigger,
                "file": rule.file,
                "file_name": PurePath(rule.file).name,
                "line": rule.line,
                "enabled": rule.enabled,
                "description": rule.spec.description,
                "missing_secrets": receiver.secrets.missing(rule.secrets),
                "fired_24h": counts.get("fired", 0),
                "failed_24h": counts.get("failed", 0),
                "last_fired": counts.get("last_fired"),
            }
        )
    return rows


def error_rows(receiver: Receiver) -> list[dict[str, Any]]:
    return [
        {
            "file": e.file,
            "line": e.line,
            "column": e.column,
            "rule_id": e.rule_id,
            "message": e.message,
            "text": str(e),
        }
        for e in receiver.pipeline.rules.errors
    ]


async def rules_overview(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What the rules list shows: each loaded rule with its 24 h counts, the errors of the
    files that failed, the drafts waiting to be fixed."""
    receiver, since = receiver_of(request), time.time() - DAY
    stats = await receiver.store.read(lambda s: history.rule_stats(s, since))
    drafts = await asyncio.to_thread(rule_folder(request).drafts)
    return {
        "rules": rule_rows(receiver, stats),
        "errors": [str(e) for e in receiver.pipeline.rules.errors],  # as `validate` prints
        "problems": error_rows(receiver),  # the same, in parts
        "warnings": [str(w) for w in receiver.pipeline.rules.warnings],
        "drafts": [{"id": d.rule_id, "file": d.file} for d in drafts],
    }


@get("/api/rules", summary="Rules with 24 h counts, rule errors (file:line) and drafts")
async def api_rules(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await rules_overview(request)


@get("/api/rules/{rule_id:str}", summary="One rule's YAML text, its builder model and problems")
async def api_rule(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> dict[str, Any]:
    """The live rule (with its draft's text, when a save was kept as a draft); a rule that
    only exists as a draft comes back as that draft, `is_draft` true."""
    folder = rule_folder(request)

    def read() -> tuple[RuleSource, str | None, bool]:
        draft = folder.draft(rule_id)
        try:
            return folder.read(rule_id), draft.text if draft else None, False
        except RuleNotFound:
            if draft is None:
                raise
            return draft, None, True

    def read_and_parse() -> tuple[RuleSource, str | None, bool, Any, list[dict[str, Any]]]:
        source, draft_text, is_draft = read()
        return (source, draft_text, is_draft, *parse_rule(source.text))

    source, draft_text, is_draft, model, problems = await _in_folder(
        request, lambda _f: read_and_parse(), reload=False
    )
    return {
        **msgspec.to_builtins(source),
        "model": model,
        "problems": problems,
        "is_draft": is_draft,
        "draft": draft_text,
    }


class SaveBody(Struct, forbid_unknown_fields=True):
    text: str
    etag: str


@put("/api/rules/{rule_id:str}", summary="Save a rule's text (409 when its file changed)")
async def api_save(
    request: Request[Any, Any, Any], rule_id: FromPath[str], data: JSONBody[SaveBody]
) -> Any:
    return await _edit(request, lambda f: f.save(rule_id, data.text, data.etag))


class CreateBody(Struct, forbid_unknown_fields=True):
    """A new rule from its text, or from a starter (`omi-rules` ships a few)."""

    text: str | None = None
    starter: str | None = None
    file: str | None = None


def starter_text(name: str) -> str:
    for starter in starters():
        if starter.name == name:
            return starter.text
    raise ClientException(f"no starter {name!r}; choose one of GET /api/starters")


@post("/api/rules", status_code=201, summary="Create a rule (new file) from text or a starter")
async def api_create(request: Request[Any, Any, Any], data: JSONBody[CreateBody]) -> SaveResult:
    text = data.text if data.text is not None else starter_text(data.starter or "blank")
    return await _edit(request, lambda f: f.create(text, data.file))


class EnabledBody(Struct, forbid_unknown_fields=True):
    enabled: bool
    etag: str | None = None


@post(
    "/api/rules/{rule_id:str}/enabled",
    status_code=200,
    summary="Turn a rule on or off (only that key changes)",
)
async def api_enabled(
    request: Request[Any, Any, Any], rule_id: FromPath[str], data: JSONBody[EnabledBody]
) -> Any:
    return await _edit(request, lambda f: f.set_enabled(rule_id, data.enabled, data.etag))


class NewIdBody(Struct, forbid_unknown_fields=True):
    new_id: str
    etag: str | None = None


@post("/api/rules/{rule_id:str}/duplicate", status_code=201, summary="Copy a rule to a new file")
async def api_duplicate(
    request: Request[Any, Any, Any], rule_id: FromPath[str], data: JSONBody[NewIdBody]
) -> Any:
    return await _edit(request, lambda f: f.duplicate(rule_id, data.new_id))


@post("/api/rules/{rule_id:str}/rename", status_code=200, summary="Give a rule a new id")
async def api_rename(
    request: Request[Any, Any, Any], rule_id: FromPath[str], data: JSONBody[NewIdBody]
) -> Any:
    return await _edit(request, lambda f: f.rename(rule_id, data.new_id, data.etag))


@delete("/api/rules/{rule_id:str}", status_code=200, summary="Delete a rule")
async def api_delete(request: Request[Any, Any, Any], rule_id: FromPath[str]) -> dict[str, str]:
    await _edit(request, lambda f: f.delete(rule_id))
    return {"deleted": rule_id}


class MergeBody(Struct, forbid_unknown_fields=True):
    text: str
    model: dict[str, Any]


@post("/api/yaml/merge", status_code=200, summary="Apply the builder's model to the YAML text")
async def api_merge(data: JSONBody[MergeBody]) -> dict[str, Any]:
    def merge() -> tuple[str, Any, list[dict[str, Any]]]:
        text = merge_model(data.text, data.model)
        return (text, *parse_rule(text))

    try:
        text, model, problems = await asyncio.to_thread(merge)
    except EditError as exc:  # the YAML is broken mid-edit: the builder waits for a fix
        raise ClientException(str(exc)) from None
    return {"text": text, "model": model, "problems": problems}


class ParseBody(Struct, forbid_unknown_fields=True):
    text: str


@post("/api/yaml/parse", status_code=200, summary="The builder's model of a YAML text")
async def api_parse(data: JSONBody[ParseBody]) -> dict[str, Any]:
    model, problems = await asyncio.to_thread(parse_rule, data.text)
    return {"model": model, "problems": problems}


@get("/api/starters", summary="Starter rules to create from")
async def api_starters() -> list[dict[str, str]]:
    return [{"name": s.name, "title": s.title, "text": s.text} for s in starters()]


ROUTES = [
    api_rules,
    api_merge,
    api_parse,
    api_starters,
    api_rule,
    api_save,
    api_create,
    api_enabled,
    api_duplicate,
    api_rename,
    api_delete,
]
