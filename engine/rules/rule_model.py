"""The rule language as msgspec Structs: what a rule file may say, and nothing else.

These Structs are the single definition behind the validator (`engine.rules.rule_decode`) and the
JSON Schema (`engine.rules.schema`), so the two cannot drift. Actions (`do:` items) are typed by the
connector registry: each item is a mapping with one key, a connector name, whose value is
that connector's `Options` Struct.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# a registered trigger's name (engine.triggers); checked against the registry when decoded
TriggerName = Annotated[str, Meta(description="which Omi webhook fires the rule")]
Speaker = Literal["user", "others", "any"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Duration = Annotated[
    str | float,
    Meta(description="seconds, or a number with a unit: 30s, 5m, 2h, 1d"),
]
JsonPath = Annotated[str, Meta(description="JSONPath (jsonpath-ng extended syntax), e.g. $.a.b")]
Template = Annotated[str, Meta(description="Jinja2 template, rendered in a sandbox")]

PATH_OPERATORS = (
    "equals",
    "not_equals",
    "in",
    "not_in",
    "contains",
    "matches",
    "exists",
    "empty",
    "not_empty",
    "gt",
    "gte",
    "lt",
    "lte",
)


class TimeWindow(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Holds while the event's time lies inside the window (wraps past midnight)."""

    after: Annotated[str, Meta(pattern=r"^\d{1,2}:\d{2}$", description="HH:MM")] | None = None
    before: Annotated[str, Meta(pattern=r"^\d{1,2}:\d{2}$", description="HH:MM")] | None = None
    weekdays: list[Weekday] | None = None
    tz: Annotated[str, Meta(description="IANA time zone, e.g. Europe/Berlin")] | None = None


class KeywordCount(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`count:` of a keywords condition: fire on the Nth mention in a session."""

    at_least: Annotated[int, Meta(ge=2, description="mentions needed (fires on this one)")]
    within: (
        Annotated[
            str | float,
            Meta(description="only mentions this long before the newest count (default: all)"),
        ]
        | None
    ) = None


class Condition(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One item of `when:`: exactly one of path / keywords / template / time / any / all / not."""

    path: JsonPath | UnsetType = UNSET
    equals: Any | UnsetType = UNSET
    not_equals: Any | UnsetType = UNSET
    in_: list[Any] | UnsetType = msgspec.field(default=UNSET, name="in")
    not_in: list[Any] | UnsetType = UNSET
    contains: Any | UnsetType = UNSET
    matches: Annotated[str, Meta(description="regular expression (re.search)")] | UnsetType = UNSET
    exists: bool | UnsetType = UNSET
    empty: bool | UnsetType = UNSET
    not_empty: bool | UnsetType = UNSET
    gt: int | float | str | UnsetType = UNSET
    gte: int | float | str | UnsetType = UNSET
    lt: int | float | str | UnsetType = UNSET
    lte: int | float | str | UnsetType = UNSET

    keywords: list[str] | str | UnsetType = UNSET
    speaker: Speaker | UnsetType = UNSET
    fuzzy: bool | UnsetType = UNSET
    negation: (
        Annotated[
            Literal["allow", "deny"],
            Meta(description="deny (default): a phrase right after don't/not/never does not fire"),
        ]
        | UnsetType
    ) = UNSET
    count: KeywordCount | UnsetType = UNSET
    slot_wait: (
        Annotated[
            str | float,
            Meta(
                description="how long a slot still being spoken ('remind me to {task}') waits "
                "for more speech: seconds or 10s, 2m (default 10s, at most 120s)"
            ),
        ]
        | UnsetType
    ) = UNSET

    template: Template | UnsetType = UNSET
    time: TimeWindow | UnsetType = UNSET

    any: list[Condition] | UnsetType = UNSET
    all: list[Condition] | UnsetType = UNSET
    not_: Condition | list[Condition] | UnsetType = msgspec.field(default=UNSET, name="not")


class UserSetting(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One per-user setting a rule needs (`settings:`): each Omi user fills it in on the
    setup page (`GET /setup?uid=...`); templates read it as `user.settings.NAME`."""

    name: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$", description="snake_case")]
    label: str = ""
    help: str = ""
    type: Annotated[
        Literal["text", "url"], Meta(description="url: an http(s) URL, checked when saved")
    ] = "text"
    secret: Annotated[
        bool, Meta(description="encrypted at rest, never shown again, sealed in stored requests")
    ] = False
    required: Annotated[
        bool, Meta(description="the rule is skipped for a user who has not set it")
    ] = True


class Rule(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One automation: when `trigger` fires and every `when:` item holds, run `do:`."""

    trigger: TriggerName
    do: Annotated[list[dict[str, Any]], Meta(min_length=1)]
    id: Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | UnsetType = UNSET
    description: str = ""
    enabled: bool = True
    uids: list[str] | None = None
    when: list[Condition] = msgspec.field(default_factory=list)
    for_each: JsonPath | None = None
    for_each_limit: (
        Annotated[
            int,
            Meta(ge=1, description="act on at most this many for_each items (default 50)"),
        ]
        | None
    ) = None
    cooldown: Duration | None = None
    once_per_session: bool = False
    settings: list[UserSetting] = msgspec.field(default_factory=list)


CONDITION_KINDS = ("path", "keywords", "template", "time", "any", "all", "not")
KEYWORD_OPTIONS = ("speaker", "fuzzy", "negation", "count", "slot_wait")


def condition_kinds(condition: Condition) -> list[str]:
    """The kinds a condition names (a valid one names exactly one)."""
    values = {
        "path": condition.path,
        "keywords": condition.keywords,
        "template": condition.template,
        "time": condition.time,
        "any": condition.any,
        "all": condition.all,
        "not": condition.not_,
    }
    return [kind for kind, value in values.items() if value is not UNSET]


def path_operators(condition: Condition) -> dict[str, Any]:
    """The path operators a condition sets, by their YAML names."""
    result = {}
    for name in PATH_OPERATORS:
        value = getattr(condition, "in_" if name == "in" else name)
        if value is not UNSET:
            result[name] = value
    return result
