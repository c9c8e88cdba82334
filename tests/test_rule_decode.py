"""rule_decode reads msgspec's error text (`- at `$...``, `Invalid enum value`, backticked
type names, `, got ...`). msgspec is bounded in pyproject.toml; these tests pin each message
shape it parses, so a release that rewords one fails here instead of silently degrading
`validate`'s errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from engine.connector import default_registry
from engine.rules.rule_decode import INVALID, DecodeContext, decode_field
from engine.rules.yaml_source import SourceMap

Trigger = Literal["memory", "transcript"]


class Holder(msgspec.Struct):
    items: list[int]


# (value, type, msgspec's own message, the rule error rule_decode makes of it)
SHAPES: list[tuple[Any, Any, str, str]] = [
    # `Expected `T`, got `U``: type names in YAML words, msgspec's "got" replaced by ours
    ("maybe", bool, "Expected `bool`, got `str`", "field: expected boolean, got text 'maybe'"),
    # a union of types, `|` read as "or"
    (
        5,
        list[int] | None,
        "Expected `array | null`, got `int`",
        "field: expected list or null, got integer 5",
    ),
    # ` - at `$[i]``: the index joins the path, the value shown is the one at that index
    (
        ["a", ["b"]],
        list[str],
        "Expected `str`, got `array` - at `$[1]`",
        "field[1]: expected text, got list ['b']",
    ),
    # ` - at `$.name[i]``: field names and indices inside a nested Struct
    (
        {"items": [1, "x"]},
        Holder,
        "Expected `int`, got `str` - at `$.items[1]`",
        "field.items[1]: expected integer, got text 'x'",
    ),
    # ` - at `$[...][i]``: a mapping's key is not named by msgspec; the index still is
    (
        {"a": [1, "x"]},
        dict[str, list[int]],
        "Expected `int`, got `str` - at `$[...][1]`",
        "field[1]: expected integer, got mapping {'a': [1, 'x']}",
    ),
    # a constraint: no "got" from msgspec, ours is added
    (
        0,
        Annotated[int, msgspec.Meta(ge=1)],
        "Expected `int` >= 1",
        "field: expected integer >= 1, got integer 0",
    ),
    # `Invalid enum value`: replaced by the allowed words and a did-you-mean
    (
        "memroy",
        Trigger,
        "Invalid enum value 'memroy'",
        "field: unknown value 'memroy' (did you mean 'memory'?); "
        "expected one of memory, transcript",
    ),
    # `Invalid enum value ... - at `$[i]``
    (
        ["memory", "nope"],
        list[Trigger],
        "Invalid enum value 'nope' - at `$[1]`",
        "field[1]: unknown value 'nope'; expected one of memory, transcript",
    ),
]


@pytest.mark.parametrize(("value", "typ", "raw", "expected"), SHAPES)
def test_each_msgspec_message_shape_becomes_its_rule_error(
    value: Any, typ: Any, raw: str, expected: str
) -> None:
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.convert(value, typ, strict=False)
    assert str(raised.value) == raw  # msgspec still words it this way
    ctx = DecodeContext(SourceMap("rule.yaml"), "r", default_registry())
    assert decode_field(value, typ, ("field",), ctx) is INVALID
    assert [error.message for error in ctx.errors] == [expected]
