"""The JSON Schema of a rule file, generated from the Structs the validator uses."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.connector import Registry, default_registry
from engine.rules.rule_model import Rule
from engine.triggers import default_triggers

SCHEMA_ID = "https://omi-rules.dev/schema/rule-file.json"


def rule_file_schema(registry: Registry | None = None) -> dict[str, Any]:
    registry = registry or default_registry()
    connectors = [registry[name] for name in registry]
    (rule_ref, *option_refs), defs = msgspec.json.schema_components(
        [Rule, *(c.Options for c in connectors)], ref_template="#/$defs/{name}"
    )
    actions = []
    for connector, ref in zip(connectors, option_refs, strict=True):
        actions.append(
            {
                "type": "object",
                "title": connector.name,
                "description": connector.summary,
                "properties": {connector.name: ref},
                "required": [connector.name],
                "additionalProperties": False,
            }
        )
    rule = defs["Rule"]
    rule["properties"]["do"]["items"] = {"oneOf": actions}
    rule["properties"]["trigger"]["enum"] = sorted(default_triggers())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "omi-rules rule file",
        "description": "One rule (a mapping) or a list of rules.",
        "oneOf": [rule_ref, {"type": "array", "items": rule_ref}],
        "$defs": defs,
    }
