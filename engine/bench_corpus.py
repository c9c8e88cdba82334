"""What `omi-rules bench` measures against: N generated memory rules, a fixed mix of the
kinds of condition real rules use, and memory payloads shaped like Omi's.

Rule i is of kind `RULE_KINDS[i % len(RULE_KINDS)]`; each rule names its own topic
(`topic-<i>`), so one event matches a few rules and skips the rest, as with real rule sets.
A fuzzy rule listens for its own made-up two-word command (`voice_command(i)`), as far from
the others as real commands are. (Commands that differ only in a number, "review topic 12"
and "review topic 13", are within fuzzy reach of each other: with them a tenth of the rules
fired on every event.)

Payloads speak of topics 0 to 9 and say fuzzy rule 3's command with one letter misheard, so
every event fires the same rules (two) whatever the rule count: the rules past the tenth are
the ones an event does not concern, and the bench measures what they cost.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

RULE_KINDS = ("equals", "in", "keywords", "fuzzy", "regex", "for_each", "template")
RULES_PER_FILE = 100
TOPICS = 10  # payload n speaks of topic n % TOPICS
SPOKEN_COMMAND_RULE = 3  # the fuzzy rule whose command every payload says

_ACTION = '  do:\n    - log: {path: bench.jsonl, message: "{{ memory.id }}"}\n'


CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"


def _made_up_word(i: int, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}{i}".encode()).digest()
    return "".join(
        CONSONANTS[digest[2 * k] % len(CONSONANTS)] + VOWELS[digest[2 * k + 1] % len(VOWELS)]
        for k in range(3)
    )


def voice_command(i: int) -> str:
    """Fuzzy rule i's phrase: two made-up words ("pirofo sutasi")."""
    return f"{_made_up_word(i, 'a')} {_made_up_word(i, 'b')}"


def misheard(phrase: str) -> str:
    """The phrase with its last letter heard wrong (fuzzy matching still hears it)."""
    return phrase[:-1] + ("e" if phrase[-1] == "a" else "a")


def rule_kind(i: int) -> str:
    return RULE_KINDS[i % len(RULE_KINDS)]


def rule_yaml(i: int) -> str:
    """Rule i as a YAML list item."""
    kind = rule_kind(i)
    head = f"- id: bench-{i}\n  trigger: memory\n"
    if kind == "equals":
        when = f"    - path: $.structured.category\n      equals: topic-{i}\n"
    elif kind == "in":
        when = f"    - path: $.structured.category\n      in: [topic-{i}, other-{i}]\n"
    elif kind == "keywords":
        when = f'    - keywords: ["launch topic {i}"]\n'
    elif kind == "fuzzy":
        when = f'    - keywords: ["{voice_command(i)}"]\n      fuzzy: true\n'
    elif kind == "regex":
        when = f'    - path: $.structured.title\n      matches: "^Plan topic-{i}( |$)"\n'
    elif kind == "for_each":
        when = f"    - path: $.structured.category\n      equals: topic-{i}\n"
        head += "  for_each: $.structured.action_items[?(@.completed == false)]\n"
    else:
        when = f"    - template: \"{{{{ memory.structured.title == 'Plan topic-{i}' }}}}\"\n"
    return head + "  when:\n" + when + _ACTION


def rule_paths(i: int) -> list[str]:
    """The JSONPaths rule i evaluates (what the naive matcher walks for every event)."""
    kind = rule_kind(i)
    if kind in ("equals", "in"):
        return ["$.structured.category"]
    if kind in ("keywords", "fuzzy"):
        return ["$.transcript_segments[*].text"]
    if kind == "regex":
        return ["$.structured.title"]
    if kind == "for_each":
        return ["$.structured.category", "$.structured.action_items[?(@.completed == false)]"]
    return ["$.structured.title"]


def write_rules(folder: Path, count: int) -> Counter[str]:
    """`count` rules into `folder` (RULES_PER_FILE to a file); the number of each kind."""
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, count, RULES_PER_FILE):
        items = (rule_yaml(i) for i in range(start, min(count, start + RULES_PER_FILE)))
        (folder / f"bench-{start // RULES_PER_FILE:04d}.yaml").write_text("".join(items))
    return Counter(rule_kind(i) for i in range(count))


def memory_payload(n: int) -> dict[str, Any]:
    """The n-th memory: Omi's fields, about topic n % TOPICS."""
    topic = n % TOPICS
    return {
        "id": f"bench-m{n}",
        "created_at": "2024-07-22T23:59:45.910559+00:00",
        "started_at": "2024-07-21T22:34:43.384323+00:00",
        "finished_at": "2024-07-21T22:35:43.384323+00:00",
        "source": "friend",
        "language": "en",
        "transcript_segments": [
            {
                "text": f"Let's launch topic {topic} next week, ticket {n}. "
                f"{misheard(voice_command(SPOKEN_COMMAND_RULE)).capitalize()}.",
                "speaker": "SPEAKER_00",
                "speaker_id": 0,
                "is_user": True,
                "start": 0.0,
                "end": 4.2,
            },
            {
                "text": "Sure, I will write the plan and book a room for the team.",
                "speaker": "SPEAKER_01",
                "speaker_id": 1,
                "is_user": False,
                "start": 4.5,
                "end": 9.0,
            },
        ],
        "structured": {
            "title": f"Plan topic-{topic}",
            "overview": "The team planned the launch and who does what.",
            "emoji": "🚀",
            "category": f"topic-{topic}",
            "action_items": [
                {"description": "Write the plan", "completed": False},
                {"description": "Book a room", "completed": True},
            ],
            "events": [],
        },
        "apps_response": [],
        "discarded": False,
    }


def memory_body(n: int) -> bytes:
    return json.dumps(memory_payload(n)).encode()
