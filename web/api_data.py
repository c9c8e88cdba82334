"""What the editor's menus are made of: the shipped samples, the registered connectors (each
with the form fields of its options, from the same Structs `omi-rules schema` prints), the
names of the secrets that are set (never their values), the rule file schema; and purging
dead letters."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody
from msgspec import Struct

from engine import samples
from engine.connector import Registry
from engine.rules.schema import rule_file_schema
from engine.server.outbox import purge_dead
from engine.server.receiver import receiver_of
from engine.triggers import default_triggers


def field_kind(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The input a form shows for one option: text, number, boolean, choice or JSON."""
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        kinds = [field_kind(o, defs) for o in options if o.get("type") != "null"]
        if len(kinds) == 1:
            return kinds[0]
        if any(k["kind"] == "text" for k in kinds):
            return {"kind": "text"}  # a template, or JSON typed as [..] / {..}
        return {"kind": "json"}
    if "enum" in schema:
        return {"kind": "choice", "choices": list(schema["enum"])}
    if "type" not in schema:
        return {"kind": "text"}  # any value: a template, or JSON typed as [..] / {..}
    kind = {"string": "text", "integer": "number", "number": "number", "boolean": "boolean"}
    return {"kind": kind.get(str(schema["type"]), "json")}


def connector_forms(registry: Registry) -> list[dict[str, Any]]:
    """Each connector with its option fields (required first, as the schema orders them)."""
    forms = []
    for name in registry:
        connector = registry[name]
        (ref,), defs = msgspec.json.schema_components(
            [connector.Options], ref_template="#/$defs/{name}"
        )
        schema = defs[ref["$ref"].rsplit("/", 1)[-1]]
        required = set(schema.get("required", []))
        fields = [
            {
                "name": field,
                "required": field in required,
                "description": spec.get("description", ""),
                **field_kind(spec, defs),
            }
            for field, spec in schema.get("properties", {}).items()
        ]
        fields.sort(key=lambda f: not f["required"])
        forms.append({"name": name, "summary": connector.summary, "fields": fields})
    return forms


@get("/api/connectors", summary="Registered connectors and the form fields of their options")
async def api_connectors(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    return connector_forms(receiver_of(request).live_rules.registry)


@get("/api/triggers", summary="Registered triggers")
async def api_triggers() -> list[dict[str, str]]:
    return [{"name": name, "summary": t.summary} for name, t in default_triggers().items()]


@get("/api/secrets", summary="Names of the secrets that are set (values are never shown)")
async def api_secrets(request: Request[Any, Any, Any]) -> list[str]:
    return receiver_of(request).secrets.names()


@get("/api/rule-schema", summary="JSON Schema of a rule file (as `omi-rules schema`)")
async def api_rule_schema(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return rule_file_schema(receiver_of(request).live_rules.registry)


@get("/api/samples", summary="Sample payloads shipped with omi-rules")
async def api_samples() -> list[dict[str, str]]:
    return [{"name": name, "trigger": trigger} for name, trigger in samples.SAMPLES.items()]


@get("/api/samples/{name:str}", summary="One sample payload (JSON samples only)")
async def api_sample(name: FromPath[str]) -> Any:
    if name not in samples.SAMPLES or samples.is_binary(name):
        raise NotFoundException(f"no JSON sample {name!r}")
    return msgspec.json.decode(samples.sample_bytes(name))


class PurgeBody(Struct, forbid_unknown_fields=True):
    """Dead letters to forget: these ids, or all of them when `ids` is left out."""

    ids: list[int] | None = None


@post("/api/dead-letters/purge", status_code=200, summary="Forget dead letters (some or all)")
async def api_purge(request: Request[Any, Any, Any], data: JSONBody[PurgeBody]) -> dict[str, int]:
    ids = [i for i in data.ids if 0 < i < 2**63] if data.ids is not None else None
    purged = await asyncio.wrap_future(purge_dead(receiver_of(request).store, ids))
    return {"purged": purged}


ROUTES = [
    api_connectors,
    api_triggers,
    api_secrets,
    api_rule_schema,
    api_samples,
    api_sample,
    api_purge,
]
