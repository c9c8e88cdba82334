"""The JSON Schema of a rule file: generated from the validator's Structs, and every shipped
rule conforms to it."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from engine.connector import default_registry
from engine.rules.loader import rule_files
from engine.rules.schema import SCHEMA_ID, rule_file_schema
from tests.conftest import RULES_DIR

SCHEMA = rule_file_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == SCHEMA_ID


def test_defs_hold_rule_condition_and_every_connectors_options() -> None:
    defs = SCHEMA["$defs"]
    assert {"Rule", "Condition", "TimeWindow"} <= set(defs)
    registry = default_registry()
    for name in registry:
        assert registry[name].Options.__name__ in defs, name
    actions = defs["Rule"]["properties"]["do"]["items"]["oneOf"]
    assert [action["title"] for action in actions] == list(registry)
    assert defs["Rule"]["properties"]["trigger"]["enum"] == sorted(
        [
            "memory",
            "transcript",
            "audio",
            "day_summary",
            "transcript_session_end",
            "audio_speech_start",
            "audio_speech_end",
        ]
    )


@pytest.mark.parametrize("path", rule_files(RULES_DIR), ids=lambda p: p.name)
def test_each_shipped_rule_file_conforms(path: Any) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    errors = [error.message for error in VALIDATOR.iter_errors(document)]
    assert errors == []


@pytest.mark.parametrize(
    "document",
    [
        {"trigerr": "memory", "do": [{"log": {}}]},
        {"trigger": "memroy", "do": [{"log": {}}]},
        {"trigger": "memory"},
        {"trigger": "memory", "do": []},
        {"trigger": "memory", "do": [{"slak": {"text": "hi"}}]},
        {"trigger": "memory", "do": [{"slack": {"txt": "hi"}}]},
        {"trigger": "memory", "do": [{"log": {}, "notify": {"message": "x"}}]},
        {"trigger": "memory", "when": [{"path": "$.a", "equal": 1}], "do": [{"log": {}}]},
        {"trigger": "memory", "when": [{"time": {"after": "noon"}}], "do": [{"log": {}}]},
        {
            "trigger": "transcript",
            "when": [{"keywords": "x", "negation": "no"}],
            "do": [{"log": {}}],
        },
        [{"trigger": "memory", "do": [{"log": {}}]}, {"trigger": "audio"}],
    ],
)
def test_broken_rules_do_not_conform(document: Any) -> None:
    assert not VALIDATOR.is_valid(document)


def test_lists_of_rules_and_nested_conditions_conform() -> None:
    document = [
        {
            "id": "a",
            "trigger": "transcript",
            "when": [
                {"keywords": ["x"], "speaker": "user", "fuzzy": True, "negation": "allow"},
                {"not": {"path": "$.a", "exists": True}},
                {"not": [{"template": "{{ true }}"}]},
                {"any": [{"time": {"after": "22:00", "before": "06:00", "weekdays": ["mon"]}}]},
            ],
            "cooldown": "30s",
            "do": [{"notify": {"message": "hi"}}],
        }
    ]
    assert VALIDATOR.is_valid(document)


def test_the_schema_knows_for_each_limit() -> None:
    limit = rule_file_schema()["$defs"]["Rule"]["properties"]["for_each_limit"]
    assert limit["anyOf"][0] == {
        "type": "integer",
        "minimum": 1,
        "description": "act on at most this many for_each items (default 50)",
    }
