"""engine.trial: a rule's text tried on its own, as the editor's live test does."""

from __future__ import annotations

from engine.connector import default_registry
from engine.rules.templates import Templates
from engine.runtime.payloads import decode_event
from engine.samples import sample_bytes
from engine.secrets import Secrets
from engine.trial import compile_candidate, template_variables, try_rule

RULE = """\
id: lights
trigger: transcript
when:
  - keywords: ["turn on the lights"]
do:
  - notify:
      message: "lights for {{ uid }}"
"""


def transcript_calls() -> list:
    return [
        decode_event("transcript", sample_bytes(f"transcript-call-{n}.json"), uid="u1")
        for n in (1, 2, 3)
    ]


def test_problems_come_with_the_line_of_the_text() -> None:
    broken = RULE.replace("notify:", "notfy:")
    candidate = compile_candidate(broken, default_registry(), Templates())
    assert candidate.rules == []
    (problem,) = candidate.problems
    assert problem.line == 6 and "notfy" in problem.message and problem.severity == "error"


def test_a_session_replays_as_one_stream() -> None:
    result = try_rule(RULE, transcript_calls(), registry=default_registry(), secrets=Secrets())
    assert len(result.reports) == 3
    fired = [i for i, report in enumerate(result.reports) if report.matched]
    assert len(fired) == 1, [r.skipped for r in result.reports]
    assert result.reports[fired[0]].matched[0].actions[0].request == {"message": "lights for u1"}


def test_variables_name_the_payload_and_secret_names_never_values() -> None:
    event = decode_event("memory", sample_bytes("memory-work.json"), uid="u1")
    names = template_variables(
        event, Secrets({"SLACK_URL": "https://hooks.example/s3cr3t"}), Templates()
    )
    assert "memory.structured.title" in names
    assert "memory.structured.action_items[0].description" in names
    assert "secrets.SLACK_URL" in names
    assert not any("s3cr3t" in name for name in names)
