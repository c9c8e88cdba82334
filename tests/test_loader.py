"""Loading rule files: one test per class of broken rule, pinned to file, line, column and
exact message; then what loads, what defaults, and how broken rules are kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import RuleError
from engine.rules.loader import load_rules
from tests.conftest import RULES_DIR
from tests.helpers import load_errors, load_ok, shown, write_rule


def only_error(errors: list[RuleError]) -> RuleError:
    assert len(errors) == 1, "\n".join(str(e) for e in errors)
    return errors[0]


def assert_error(
    error: RuleError, path: Path, line: int, column: int, rule_id: str | None, message: str
) -> None:
    assert (error.file, error.line, error.column, error.rule_id, error.message) == (
        shown(path),
        line,
        column,
        rule_id,
        message,
    )
    rule = f" rule {rule_id}:" if rule_id else ""
    assert str(error) == f"{shown(path)}:{line}:{column}:{rule} {message}"


# -- one test per class of broken rule ---------------------------------------------------


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write_rule(
        tmp_path,
        """
        id: broken
        trigger: memory
        do:
          - log: {message: "x"
        """,
    )
    error = only_error(load_rules(tmp_path).errors)
    assert_error(
        error,
        path,
        5,
        1,
        None,
        "YAML syntax: while parsing a flow mapping, expected ',' or '}', but got '<stream end>'",
    )


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = write_rule(
        tmp_path,
        """
        id: dup
        trigger: memory
        trigger: transcript
        do:
          - log: {}
        """,
    )
    error = only_error(load_rules(tmp_path).errors)
    assert_error(error, path, 3, 1, None, "duplicate key 'trigger'")


def test_unknown_top_level_key_suggests_the_close_one(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: typo
        trigerr: memory
        do:
          - log: {}
        """,
    )
    # one mistake, one error: the missing 'trigger' is the misspelt key, not a second error
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        2,
        1,
        "typo",
        "unknown key 'trigerr' (did you mean 'trigger'?)",
    )


def test_on_instead_of_trigger(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: on-key
        on: memory
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        2,
        1,
        "on-key",
        "unknown key 'on' (a bare `on:` is read as true by YAML; write `trigger:`)",
    )


def test_wrong_type(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: typed
        trigger: memory
        enabled: maybe
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        3,
        10,
        "typed",
        "enabled: expected boolean, got text 'maybe'",
    )


def test_wrong_type_inside_a_list(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: typed
        trigger: memory
        uids: [user1, [nested]]
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        3,
        15,
        "typed",
        "uids[1]: expected text, got list ['nested']",
    )


def test_unknown_trigger(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: trig
        trigger: memroy
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        2,
        10,
        "trig",
        "trigger: unknown value 'memroy' (did you mean 'memory'?); "
        "expected one of memory, transcript, audio, day_summary, transcript_session_end, "
        "audio_speech_start, audio_speech_end",
    )


def test_unknown_operator(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: op
        trigger: memory
        when:
          - path: $.discarded
            equal: false
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        5,
        "op",
        "unknown key 'equal' (did you mean 'equals'?)",
    )


def test_unknown_connector(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: conn
        trigger: memory
        do:
          - slak:
              text: hi
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        4,
        5,
        "conn",
        "unknown connector 'slak' (did you mean 'slack'?); "
        "known: email, home_assistant, http, log, notify, notion, omi, record, slack",
    )


def test_unknown_connector_option(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: opt
        trigger: memory
        do:
          - slack:
              webhook_url: https://hooks.example/x
              txt: hi
        """,
    )
    # `txt` is unknown; the connector's own check (text or blocks) is not reached
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        6,
        7,
        "opt",
        "unknown key 'txt' (did you mean 'text'?)",
    )


def test_connector_rejects_its_options(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: opt
        trigger: memory
        do:
          - slack:
              text: hi
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        7,
        "opt",
        "slack: give webhook_url, or token and channel",
    )


def test_an_utterance_body_on_a_trigger_whose_sender_names_the_file(tmp_path: Path) -> None:
    """body_audio: utterance sends the file the event names: on a memory, the sender's
    payload would name it (was a warning only, the rule loaded)."""
    errors = load_errors(
        tmp_path,
        """
        id: leak
        trigger: memory
        do:
          - http:
              url: https://example.com/in
              body_audio: utterance
        """,
    )
    error = only_error(errors)
    assert (error.file, error.line, error.rule_id) == (shown(tmp_path / "rule.yaml"), 6, "leak")
    assert error.message == "http: body_audio: utterance needs trigger audio_speech_end"


def test_jsonpath_that_does_not_parse(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: jp
        trigger: memory
        when:
          - path: $.structured[
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        4,
        11,
        "jp",
        "path: JSONPath '$.structured[' does not parse: Parse error near the end of string!",
    )


def test_for_each_jsonpath_that_does_not_parse(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: jp
        trigger: memory
        for_each: $.structured.action_items[?(@.completed ==
        do:
          - log: {}
        """,
    )
    error = only_error(errors)
    assert (error.line, error.column, error.rule_id) == (3, 11, "jp")
    assert error.message.startswith(
        "for_each: JSONPath '$.structured.action_items[?(@.completed ==' does not parse"
    )


def test_jinja_that_does_not_compile(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: jinja
        trigger: memory
        do:
          - log:
              message: "{{ memory.structured.title "
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        16,
        "jinja",
        "do[0].log.message: template syntax: unexpected end of template, "
        "expected 'end of print statement'.",
    )


def test_jinja_error_names_the_line_inside_the_template(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: jinja
        trigger: memory
        do:
          - log:
              message: |
                first line
                second line
                {{ memory.id + }}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        16,
        "jinja",
        "do[0].log.message: template syntax: unexpected 'end of print statement' (template line 3)",
    )


def test_template_naming_an_unknown_variable(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: var
        trigger: memory
        do:
          - log:
              message: "{{ memroy.structured.title }}"
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        16,
        "var",
        "do[0].log.message: template uses unknown variable 'memroy' "
        "(known: event, memory, now, rule, secrets, uid, user)",
    )


def test_template_using_item_without_for_each(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: item
        trigger: memory
        do:
          - notify:
              message: "{{ item.description }}"
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        16,
        "item",
        "do[0].notify.message: template uses 'item', which only a rule with for_each has",
    )


def test_template_using_memory_in_a_transcript_rule(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: alias
        trigger: transcript
        do:
          - notify:
              message: "{{ memory.structured.title }}"
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        16,
        "alias",
        "do[0].notify.message: template uses 'memory', which a transcript rule does not have "
        "(it has segments, session and event)",
    )


def test_template_using_match_without_keywords(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: m
        trigger: transcript
        do:
          - notify:
              message: "{{ match.phrase }}"
        """,
    )
    assert only_error(errors).message == (
        "do[0].notify.message: template uses 'match', which only a rule with a keywords "
        "condition has"
    )


def test_template_error_inside_a_nested_option(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: nested
        trigger: memory
        do:
          - http:
              url: https://example.test/hook
              json:
                items:
                  - "{{ memory.id }}"
                  - "{{ nope }}"
        """,
    )
    error = only_error(errors)
    assert (error.line, error.column) == (9, 13)
    assert error.message.startswith(
        "do[0].http.json.items[1]: template uses unknown variable 'nope'"
    )


def test_bad_regex_in_matches(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: rx
        trigger: memory
        when:
          - path: $.structured.title
            matches: "([a-z"
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        14,
        "rx",
        "matches: bad regular expression: unterminated character set at position 1",
    )


def test_bad_duration_in_cooldown(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: cool
        trigger: transcript
        cooldown: 5 minutes
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        3,
        11,
        "cool",
        "cooldown: '5 minutes' is not a duration (use 30s, 5m, 2h, 1d or 1h30m)",
    )


def test_condition_with_two_kinds(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: two
        trigger: memory
        when:
          - path: $.discarded
            equals: false
            keywords: [hello]
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        4,
        5,
        "two",
        "a condition names exactly one of path, keywords, template, time, any, all, not "
        "(found: path, keywords)",
    )


def test_condition_with_no_kind(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: none
        trigger: memory
        when:
          - equals: false
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == (
        "a condition names exactly one of path, keywords, template, time, any, all, not "
        "(found: none)"
    )


def test_duplicate_rule_ids_across_files(tmp_path: Path) -> None:
    first = write_rule(tmp_path, "id: same\ntrigger: memory\ndo: [{log: {}}]\n", "a.yaml")
    second = write_rule(
        tmp_path, "# the same id again\nid: same\ntrigger: memory\ndo: [{log: {}}]\n", "b.yaml"
    )
    ruleset = load_rules(tmp_path)
    assert_error(
        only_error(ruleset.errors),
        second,
        2,
        1,
        "same",
        f"duplicate rule id 'same' (first defined at {shown(first)}:1)",
    )
    assert [rule.file for rule in ruleset.rules] == [shown(first)]
    assert ruleset.broken_ids == {"same": "duplicate rule id"}


def test_missing_required_do(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: nothing-to-do
        trigger: memory
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        1,
        1,
        "nothing-to-do",
        "rule: missing required key 'do'",
    )


def test_empty_do(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, "id: e\ntrigger: memory\ndo: []\n")
    assert only_error(errors).message == "do: expected list of length >= 1, got list []"


# -- more shapes of mistakes ------------------------------------------------------------


def test_when_given_as_a_mapping_is_an_error_not_a_crash(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: w
        trigger: memory
        when: {path: $.discarded, equals: false}
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors), tmp_path / "rule.yaml", 3, 7, "w", "when: expected a list, got mapping"
    )


def test_unknown_speaker_value(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: s
        trigger: transcript
        when:
          - keywords: [hi]
            speaker: usr
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == (
        "when[0].speaker: unknown value 'usr' (did you mean 'user'?); "
        "expected one of user, others, any"
    )


def test_operators_need_a_path(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: p
        trigger: memory
        when:
          - template: "{{ true }}"
            equals: 1
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == "operators equals need a 'path:'"


def test_keyword_options_need_keywords(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: k
        trigger: memory
        when:
          - path: $.discarded
            speaker: user
        do:
          - log: {}
        """,
    )
    error = only_error(errors)
    assert (error.line, error.column, error.message) == (
        5,
        5,
        "'speaker' only goes with 'keywords:'",
    )


def test_keywords_in_an_audio_rule(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: a
        trigger: audio
        when:
          - keywords: [hello]
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == "keywords: an audio event carries no text"


def test_keywords_without_words(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: a
        trigger: transcript
        when:
          - keywords: ["!!", "  "]
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == "keywords: give at least one phrase with a word in it"


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("{after: '12:99'}", "time.after: '12:99' is not a time of day"),
        ("{before: '25:00'}", "time.before: '25:00' is not a time of day"),
        ("{tz: Mars/Olympus}", "time.tz: unknown time zone 'Mars/Olympus'"),
        ("{after: noon}", "when[0].time.after: expected text matching regex"),
        ("{weekdays: [monday]}", "when[0].time.weekdays[0]: unknown value 'monday'"),
    ],
)
def test_bad_time_windows(tmp_path: Path, window: str, message: str) -> None:
    errors = load_errors(
        tmp_path,
        f"""
        id: t
        trigger: memory
        when:
          - time: {window}
        do:
          - log: {{}}
        """,
    )
    assert only_error(errors).message.startswith(message)


def test_empty_group(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: g
        trigger: memory
        when:
          - any: []
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == "any: give at least one condition"


def test_action_that_names_two_connectors(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: two
        trigger: memory
        do:
          - log: {}
            notify: {message: hi}
        """,
    )
    assert only_error(errors).message == (
        "do[0]: each action is a mapping with one connector name "
        "(email, home_assistant, http, log, notify, notion, omi, record, slack), "
        "got keys log, notify"
    )


def test_invalid_rule_id(tmp_path: Path) -> None:
    errors = load_errors(tmp_path, "id: 'has spaces'\ntrigger: memory\ndo: [{log: {}}]\n")
    assert only_error(errors).message == (
        "id: expected text matching regex '^[A-Za-z0-9][A-Za-z0-9_.-]*$', got text 'has spaces'"
    )


def test_a_file_holding_a_scalar(tmp_path: Path) -> None:
    path = write_rule(tmp_path, "just words\n")
    assert_error(
        only_error(load_rules(tmp_path).errors),
        path,
        1,
        1,
        None,
        "a rule file holds a rule (mapping) or a list of rules, got str",
    )


def test_every_error_of_a_rule_is_reported_in_line_order(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: many
        trigger: memory
        uids: user1
        enabled: sometimes
        do: []
        """,
    )
    assert [(e.line, e.message) for e in errors] == [
        (3, "uids: expected list or null, got text 'user1'"),
        (4, "enabled: expected boolean, got text 'sometimes'"),
        (5, "do: expected list of length >= 1, got list []"),
    ]


def test_errors_in_a_list_file_name_the_rule_not_its_index(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        - id: good
          trigger: memory
          do: [{log: {}}]
        - id: bad
          trigger: memory
          enabled: sometimes
          do:
            - log:
                message: "{{ nope }}"
        """,
    )
    assert [(e.rule_id, e.line, e.message.split(" (")[0]) for e in errors] == [
        ("bad", 6, "enabled: expected boolean, got text 'sometimes'"),
    ]
    assert errors[0].where == "enabled"


# -- what loads -------------------------------------------------------------------------


def test_a_broken_rule_leaves_the_others_loaded(tmp_path: Path) -> None:
    write_rule(
        tmp_path,
        """
        - id: good
          trigger: memory
          do: [{log: {}}]
        - id: bad
          trigger: memroy
          do: [{log: {}}]
        - trigger: transcript
          do: [{log: {}}]
        """,
        "mixed.yaml",
    )
    ruleset = load_rules(tmp_path)
    assert [rule.id for rule in ruleset.rules] == ["good", "mixed-3"]
    assert list(ruleset.broken_ids) == ["bad"]
    assert ruleset.broken_ids["bad"].startswith("trigger: unknown value 'memroy'")
    assert [rule.id for rule in ruleset.for_trigger("transcript")] == ["mixed-3"]


def test_rules_may_share_settings_through_yaml_merge_keys(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        - &lights
          id: lights-on
          trigger: transcript
          cooldown: 30s
          when:
            - keywords: [lights on]
          do: [{log: {}}]
        - <<: *lights
          id: lights-off
          when:
            - keywords: [lights off]
        """,
    )
    assert [(rule.id, rule.cooldown) for rule in ruleset.rules] == [
        ("lights-on", 30.0),
        ("lights-off", 30.0),
    ]


def test_id_defaults_to_the_file_stem(tmp_path: Path) -> None:
    ruleset = load_ok(tmp_path, "trigger: memory\ndo: [{log: {}}]\n", "my-rule.yml")
    (rule,) = ruleset.rules
    assert (rule.id, rule.file, rule.line) == ("my-rule", shown(tmp_path / "my-rule.yml"), 1)


def test_only_yaml_files_are_read(tmp_path: Path) -> None:
    write_rule(tmp_path, "trigger: memory\ndo: [{log: {}}]\n", "a.yaml")
    write_rule(tmp_path, "not: [valid", "notes.txt")
    write_rule(tmp_path, "", "empty.yaml")
    ruleset = load_rules(tmp_path)
    assert [rule.id for rule in ruleset.rules] == ["a"]
    assert ruleset.errors == []
    assert ruleset.files == [shown(tmp_path / "a.yaml"), shown(tmp_path / "empty.yaml")]


def test_missing_folder(tmp_path: Path) -> None:
    ruleset = load_rules(tmp_path / "nope")
    assert [str(e) for e in ruleset.errors] == [
        f"<rules>: rules folder {shown(tmp_path / 'nope')} does not exist"
    ]


def test_compiled_rule_knows_its_secrets_and_settings(tmp_path: Path) -> None:
    ruleset = load_ok(
        tmp_path,
        """
        id: full
        trigger: transcript
        uids: [a, b]
        cooldown: 1m30s
        when:
          - not:
              keywords: [stop]
        do:
          - email:
              to: "{{ secrets.TO }}"
              from: me@example.test
              text: "{{ secrets['EXTRA'] }}"
        """,
    )
    rule = ruleset.get("full")
    assert rule is not None
    assert rule.cooldown == 90.0
    assert rule.uids == frozenset({"a", "b"})
    assert rule.secrets == frozenset({"TO", "EXTRA", "SMTP_HOST"})
    assert [action.name for action in rule.actions] == ["email"]


def test_the_shipped_rules_load_without_errors() -> None:
    ruleset = load_rules(RULES_DIR)
    assert ruleset.errors == []
    assert sorted(rule.id for rule in ruleset.rules) == [
        "action-items-to-notion",
        "day-summary-email",
        "lights-on",
        "log-conversation-end",
        "log-day-summaries",
        "log-memories",
        "log-transcripts",
        "personal-to-webhook",
        "published-lights",
        "published-notion",
        "published-slack",
        "record-audio",
        "remind-me",
        "work-to-slack",
    ]


def test_a_regex_re2_cannot_run_is_an_error_at_its_line(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        r"""
        id: rx
        trigger: memory
        when:
          - path: $.structured.title
            matches: '(\w+) \1'
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        5,
        14,
        "rx",
        r"matches: '(\\w+) \\1' needs a feature the linear-time regex engine (RE2) does not "
        r"have, such as backreferences or lookaround (invalid escape sequence: \1)",
    )


def test_for_each_limit_needs_for_each(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: fan
        trigger: memory
        for_each_limit: 5
        do:
          - log: {}
        """,
    )
    assert_error(
        only_error(errors),
        tmp_path / "rule.yaml",
        3,
        1,
        "fan",
        "'for_each_limit' only goes with 'for_each'",
    )


def test_for_each_limit_is_at_least_one(tmp_path: Path) -> None:
    errors = load_errors(
        tmp_path,
        """
        id: fan
        trigger: memory
        for_each: $.structured.action_items[*]
        for_each_limit: 0
        do:
          - log: {}
        """,
    )
    assert only_error(errors).message == "for_each_limit: expected integer >= 1, got integer 0"
