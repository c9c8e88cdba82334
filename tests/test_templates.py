"""Templates: a sandbox without attribute escapes, strict undefined, bounded output,
HTML autoescape only where the connector asks, and the context rules see."""

from __future__ import annotations

import email
import json
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.errors import TemplateError
from engine.rules.templates import MAX_OUTPUT, Templates, TemplateSyntax, template_strings
from tests.helpers import decision, event, load_ok, memory, run
from tests.server_helpers import LiveServer, server_settings, write_rules
from tests.wait import wait_until

T = Templates()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ ''.__class__ }}", "access to attribute '__class__' of 'str' object is unsafe."),
        (
            "{{ memory.__class__.__mro__ }}",
            "access to attribute '__class__' of 'dict' object is unsafe.",
        ),
        (
            "{{ memory.update({'a': 1}) }}",
            "access to attribute 'update' of 'dict' object is unsafe.",
        ),
        ("{{ memory.pop('title') }}", "access to attribute 'pop' of 'dict' object is unsafe."),
        (
            "{{ cycler.__init__.__globals__ }}",
            "access to attribute '__init__' of 'type' object is unsafe.",
        ),
        (
            "{{ (1).__class__.__base__.__subclasses__() }}",
            "access to attribute '__class__' of 'int' object is unsafe.",
        ),
    ],
)
def test_sandbox_refuses_attribute_escapes(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        T.render(source, {"memory": {"title": "x"}}, rule_id="r", field="text")
    assert caught.value.message == f"refused by sandbox: {message}"
    assert (caught.value.rule_id, caught.value.field) == ("r", "text")
    assert str(caught.value) == f"rule r: text: refused by sandbox: {message}"


def test_missing_variables_and_keys_are_errors_not_empty_text() -> None:
    with pytest.raises(TemplateError) as caught:
        T.render("{{ x }}", {})
    assert caught.value.message == "'x' is undefined"
    with pytest.raises(TemplateError) as caught:
        T.render("{{ memory.structured.nope }}", {"memory": {"structured": {}}})
    assert caught.value.message == "'dict object' has no attribute 'nope'"
    assert T.render("{{ memory.nope | default('none') }}", {"memory": {}}) == "none"


def test_output_is_bounded() -> None:
    assert len(T.render("{{ 'x' * n }}", {"n": MAX_OUTPUT})) == MAX_OUTPUT
    half = "x" * (MAX_OUTPUT // 2 + 1)
    with pytest.raises(TemplateError) as caught:
        T.render("{{ a }}{{ a }}", {"a": half}, field="text")
    assert caught.value.message == f"output longer than {MAX_OUTPUT} characters"
    with pytest.raises(TemplateError) as caught:
        T.render("{% for i in range(60000) %}ab{% endfor %}", {})
    assert caught.value.message == f"output longer than {MAX_OUTPUT} characters"


def test_huge_values_are_refused_before_they_are_built() -> None:
    with pytest.raises(TemplateError) as caught:
        T.render("{{ 'x' * 10**12 }}", {})
    assert caught.value.message == f"refused by sandbox: repetition longer than {MAX_OUTPUT} items"
    with pytest.raises(TemplateError) as caught:
        T.render("{{ [1, 2] * n }}", {"n": 10**9})
    assert caught.value.message.startswith("refused by sandbox: repetition longer")
    with pytest.raises(TemplateError) as caught:
        T.render("{{ 3 ** 100000 }}", {})
    assert caught.value.message == "refused by sandbox: power larger than 4096 bits"
    with pytest.raises(TemplateError) as caught:
        T.render("{% for i in range(10**6) %}{% endfor %}", {})
    assert caught.value.message.startswith("OverflowError: Range too big.")
    assert T.render("{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ 4 * 5 }}", {}) == "ababab 1024 20"


def test_other_runtime_errors_become_template_errors() -> None:
    with pytest.raises(TemplateError) as caught:
        T.render("{{ 1 / 0 }}", {}, rule_id="r", field="f")
    assert str(caught.value) == "rule r: f: ZeroDivisionError: division by zero"


def test_html_autoescape_is_per_render() -> None:
    context = {"title": "Tom & Jerry <b>"}
    assert T.render("<p>{{ title }}</p>", context, autoescape=True) == (
        "<p>Tom &amp; Jerry &lt;b&gt;</p>"
    )
    assert T.render("<p>{{ title }}</p>", context) == "<p>Tom & Jerry <b></p>"


def test_plain_text_is_not_compiled() -> None:
    assert T.render("no { template } here", {}) == "no { template } here"


def test_compiled_templates_are_cached() -> None:
    templates = Templates()
    assert templates.compile("{{ a }}") is templates.compile("{{ a }}")
    assert templates.compile("{{ a }}") is not templates.compile("{{ a }}", autoescape=True)


def test_render_value_walks_nested_options() -> None:
    value = {"items": ["{{ a }}", {"deep": "<{{ a }}>"}], "n": 3}
    rendered = T.render_value(
        value, {"a": "&"}, autoescape=lambda field: field == "json.items", field="json"
    )
    assert rendered == {"items": ["&amp;", {"deep": "<&>"}], "n": 3}
    assert list(template_strings(value)) == [
        (".items[0]", "{{ a }}"),
        (".items[1].deep", "<{{ a }}>"),
    ]


def test_filters_are_available() -> None:
    doc = memory()
    assert T.render("{{ memory | transcript }}", {"memory": doc}) == (
        "You: Let's plan the launch.\nSPEAKER_01: Sure, next sprint."
    )
    assert T.render("{{ memory | duration }}", {"memory": doc}) == "1m"
    assert T.render("{{ memory.structured.action_items | bullets }}", {"memory": doc}) == (
        "- Write the plan\n- Book a room"
    )


# -- checking at load -----------------------------------------------------------------------


def test_check_returns_the_secrets_a_template_names() -> None:
    source = (
        "{{ secrets.A }} {{ secrets['B'] }} {{ memory.id }}"
        "{% for name in ['C'] %}{{ secrets[name] }}{% endfor %}"
    )
    assert T.check(source, trigger="memory") == {"A", "B"}


@pytest.mark.parametrize(
    ("trigger", "source", "message"),
    [
        (
            "day_summary",
            "{{ memory.id }}",
            "template uses 'memory', which a day_summary rule does not have "
            "(it has summary and event)",
        ),
        (
            "audio",
            "{{ segments }}",
            "template uses 'segments', which a audio rule does not have (it has audio and event)",
        ),
        ("memory", "{{ item }}", "template uses 'item', which only a rule with for_each has"),
        (
            "transcript",
            "{{ foo }}",
            "template uses unknown variable 'foo' "
            "(known: event, now, rule, secrets, segments, session, uid, user)",
        ),
        (
            "memory",
            "{{ x",
            "template syntax: unexpected end of template, expected 'end of print statement'.",
        ),
    ],
)
def test_check_refuses_names_the_rule_does_not_have(
    trigger: str, source: str, message: str
) -> None:
    with pytest.raises(TemplateSyntax) as caught:
        T.check(source, trigger=trigger)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("trigger", "source"),
    [
        ("day_summary", "{{ summary.headline }} {{ event.uid }}"),
        ("audio", "{{ audio.duration }} {{ uid }}"),
        ("transcript", "{{ session.text }} {{ segments | transcript }} {{ now }}"),
        ("memory", "{% for s in memory.transcript_segments %}{{ s.text }}{% endfor %}"),
    ],
)
def test_check_accepts_the_trigger_alias_and_local_names(trigger: str, source: str) -> None:
    assert T.check(source, trigger=trigger) == set()


# -- through a rule, in dry-run -------------------------------------------------------------


def test_template_failures_become_the_action_error(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: r
        trigger: memory
        do:
          - notify:
              message: "{{ memory.structured.nope }}"
          - notify:
              message: "{{ memory.__class__ }}"
          - notify:
              message: "ok {{ memory.structured.title }}"
        """,
    )
    outcome = run(ruleset, event("memory", memory()))
    assert [(a.error, a.request) for a in outcome.actions[:2]] == [
        ("do[0].notify.message: 'dict object' has no attribute 'nope'", None),
        (
            "do[1].notify.message: refused by sandbox: "
            "access to attribute '__class__' of 'dict' object is unsafe.",
            None,
        ),
    ]
    assert outcome.actions[2].request.message == "ok Launch planning"


def test_email_html_is_autoescaped_but_text_is_not(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: mail
        trigger: memory
        do:
          - email:
              to: a@example.test
              from: b@example.test
              subject: "{{ memory.structured.title }}"
              text: "{{ memory.structured.title }}"
              html: "<p>{{ memory.structured.title }}</p>"
        """,
    )
    outcome = run(ruleset, event("memory", memory(title="Tom & Jerry <b>")))
    (action,) = outcome.actions
    message = email.message_from_string(action.request.message, policy=default_policy)
    assert message["Subject"] == "Tom & Jerry <b>"
    text, html = (part.get_content() for part in message.iter_parts())
    assert text == "Tom & Jerry <b>\n"
    assert html == "<p>Tom &amp; Jerry &lt;b&gt;</p>\n"


def test_context_of_a_memory_rule(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: ctx
        description: shows the context
        trigger: memory
        do:
          - notify:
              message: >-
                {{ uid }}|{{ rule.id }}|{{ rule.description }}|{{ rule.trigger }}|
                {{ now.isoformat() }}|{{ event.id }}|{{ memory.structured.title }}|
                {{ secrets.TOKEN }}
        """,
    )
    outcome = run(ruleset, event("memory", memory(), uid="alice"), now=0.0)
    assert outcome.actions[0].request.message == (
        "alice|ctx|shows the context|memory| 1970-01-01T00:00:00+00:00|m1|Launch planning| "
        "<secret:TOKEN>"
    )


def test_context_of_transcript_and_day_summary_rules(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        - id: live
          trigger: transcript
          do:
            - notify:
                message: "{{ session.id }}|{{ session.text }}|{{ segments | length }}"
        - id: day
          trigger: day_summary
          do:
            - notify:
                message: "{{ summary.headline }}|{{ event.uid }}"
        """,
    )
    segments = [{"text": "one", "start": 0, "end": 1}, {"text": "two", "start": 1, "end": 2}]
    live = run(ruleset, event("transcript", segments, session="s1"))
    assert live.actions[0].request.message == "s1|one two|2"
    day = run(ruleset, event("day_summary", {"uid": "u", "summary_json": {"headline": "H"}}))
    assert day.actions[0].request.message == "H|u"
    assert decision(day, "day").matched is True


# -- bounded memory and time per render --------------------------------------------------------

BIG = f"over {MAX_OUTPUT}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{{ 'x'.center(200000000) }}",
            f"result of str.center longer than {MAX_OUTPUT} characters",
        ),
        ("{{ 'x'.zfill(200000000) }}", f"result of str.zfill longer than {MAX_OUTPUT} characters"),
        ("{{ '%0100000000d' % 1 }}", f"format width or precision {BIG}"),
        ("{{ '%.100000000f' % 1.0 }}", f"format width or precision {BIG}"),
        ("{{ '%*d' % (100000000, 1) }}", "'*' width or precision in % formatting is not allowed"),
        ("{{ '{:>100000000}'.format(1) }}", f"format width or precision {BIG}"),
        ("{{ '{:{w}}'.format(1, w=100000000) }}", f"format width or precision {BIG}"),
        ("{{ '{0}{0}'.format(s) }}", f"formatted text longer than {MAX_OUTPUT} characters"),
        (
            "{{ 'x'|center(200000000) }}",
            f"result of the center filter longer than {MAX_OUTPUT} characters",
        ),
        (
            "{{ 'a\nb'|indent(100000000) }}",
            f"result of the indent filter longer than {MAX_OUTPUT} characters",
        ),
        ("{{ '%0100000000d'|format(1) }}", f"format width or precision {BIG}"),
        ("{{ [s, s]|join }}", f"result of the join filter longer than {MAX_OUTPUT} characters"),
        ("{{ ''.join([s, s]) }}", f"result of str.join longer than {MAX_OUTPUT} characters"),
        (
            "{{ s|replace('x', 'xx') }}",
            f"result of the replace filter longer than {MAX_OUTPUT} characters",
        ),
        (
            "{{ s.replace('x', 'xx') }}",
            f"result of str.replace longer than {MAX_OUTPUT} characters",
        ),
        ("{{ s + s }}", f"concatenation longer than {MAX_OUTPUT} characters"),
        ("{% set t = s ~ s %}", f"concatenation longer than {MAX_OUTPUT} characters"),
        ("{{ [s] * 2 }}", f"repetition longer than {MAX_OUTPUT} items"),
        ("{{ (2 ** 2000) * (2 ** 2000) * (2 ** 2000) }}", "product larger than 4096 bits"),
        (
            "{{ [1]|batch(100000000, 0)|list }}",
            f"result of the batch filter longer than {MAX_OUTPUT} characters",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            f"concatenation longer than {MAX_OUTPUT} characters",
        ),
    ],
)
def test_big_values_are_refused_before_they_are_built(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        T.render(source, {"s": "x" * (MAX_OUTPUT // 2 + 1)}, rule_id="r", field="text")
    assert caught.value.message == f"refused by sandbox: {message}"


def test_a_nested_list_doubled_many_times_is_not_written_out() -> None:
    source = "{% set a = [s] %}" + "".join("{% set a = [a, a] %}" for _ in range(40)) + "{{ a }}"
    with pytest.raises(TemplateError) as caught:
        T.render(source, {"s": "x" * 1000})
    assert caught.value.message == f"output longer than {MAX_OUTPUT} characters"


def test_lipsum_is_not_available() -> None:
    with pytest.raises(TemplateError) as caught:
        T.render("{{ lipsum(100000000) }}", {})
    assert caught.value.message == "'lipsum' is undefined"


def test_ordinary_templates_still_render() -> None:
    context = {"items": ["a", "b"], "n": 3}
    assert T.render("{{ items|join(', ') }} {{ '%03d' % n }} {{ '{:>4}'.format(n) }}", context) == (
        "a, b 003    3"
    )
    assert T.render("{% for i in items %}{{ loop.index }}{{ i ~ '!' }}{% endfor %}", context) == (
        "1a!2b!"
    )
    assert T.render("{{ 'ab'.center(6, '*') }}|{{ 'x'|indent(2, true) }}", context) == "**ab**|  x"


def stepping_clock(step_ms: float = 1.0) -> Any:
    ticks = iter(range(10**9))
    return lambda: next(ticks) * step_ms / 1000


@pytest.mark.parametrize(
    "source",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "{% for i in range(100000) %}{% for j in 'x' * 100000 %}{{ '' }}{% endfor %}{% endfor %}",
    ],
)
def test_a_render_past_its_deadline_fails(source: str) -> None:
    templates = Templates(render_budget_ms=50, clock=stepping_clock())
    with pytest.raises(TemplateError) as caught:
        templates.render(source, {}, rule_id="r", field="text")
    assert caught.value.message == "rendering took longer than 50 ms (render_budget_ms)"
    assert (caught.value.rule_id, caught.value.field) == ("r", "text")


def test_a_recursive_macro_is_a_template_error() -> None:
    with pytest.raises(TemplateError) as caught:
        T.render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", {}, rule_id="r", field="text")
    assert caught.value.message == "recursion too deep (a macro calling itself?)"


RECURSIVE_AND_UNRELATED = """
- id: recursive
  trigger: memory
  do:
    - log: {message: "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"}
- id: recursive-condition
  trigger: memory
  when:
    - template: "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"
  do: [{log: {}}]
- id: unrelated
  trigger: memory
  do:
    - log: {message: "saved {{ memory.structured.title }}"}
"""


def test_a_failing_render_fails_its_own_action_only_over_http(tmp_path: Path) -> None:
    # a generous render budget, so recursion (not the clock) is what stops the macro
    settings = server_settings(tmp_path, render_budget_ms=30_000)
    write_rules(Path(settings.rules), RECURSIVE_AND_UNRELATED)
    with LiveServer(settings) as server:
        answer = httpx.post(server.url + "/webhook/memory?uid=u", json=memory(), timeout=30)
        assert answer.status_code == 200
        store = server.receiver.store
        (row,) = store.query("SELECT status, decisions FROM events")
        assert row["status"] == "processed"
        reasons = {d["rule"]: d["reason"] for d in json.loads(row["decisions"])}
        assert reasons["recursive-condition"] == (
            "when.template failed: recursion too deep (a macro calling itself?)"
        )

        def settled() -> list[Any] | None:
            rows = store.query("SELECT rule_id, status, last_error FROM actions ORDER BY rule_id")
            return rows if [r["status"] for r in rows] == ["error", "delivered"] else None

        rows = wait_until(settled, what="one action failed and one delivered")
        assert [(r["rule_id"], r["status"]) for r in rows] == [
            ("recursive", "error"),
            ("unrelated", "delivered"),
        ]
        assert rows[0]["last_error"] == (
            "do[0].log.message: recursion too deep (a macro calling itself?)"
        )
    logged = (Path(settings.data_dir) / "actions.jsonl").read_text()
    assert '"message":"saved Launch planning"' in logged
