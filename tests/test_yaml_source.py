"""YAML with marks: every value and key knows its line and column."""

from __future__ import annotations

import pytest

from engine.rules.yaml_source import Mark, YamlSyntaxError, load_with_marks

RULE = "id: a\ntrigger: memory\ndo:\n  - log: {}\n"


def test_values_and_keys_keep_their_marks() -> None:
    data, source = load_with_marks(RULE, "f.yaml")
    assert data == {"id": "a", "trigger": "memory", "do": [{"log": {}}]}
    assert source.file == "f.yaml"
    assert source.values[("trigger",)] == Mark(2, 10)
    assert source.keys[("trigger",)] == Mark(2, 1)
    assert source.values[("do", 0)] == Mark(4, 5)
    assert source.values[("do", 0, "log")] == Mark(4, 10)
    assert source.keys[("do", 0, "log")] == Mark(4, 5)


def test_mark_of_falls_back_to_the_nearest_ancestor() -> None:
    _, source = load_with_marks(RULE, "f.yaml")
    assert source.mark_of(("do", 0, "log", "message")) == Mark(4, 10)
    assert source.mark_of(("trigger",), key=True) == Mark(2, 1)
    assert source.mark_of(("nowhere", 3)) == Mark(1, 1)


def test_on_and_other_yaml_11_booleans_stay_as_written() -> None:
    data, _ = load_with_marks("on: memory\nyes: 1\n1: x\n", "f.yaml")
    assert data == {"on": "memory", "yes": 1, "1": "x"}


def test_duplicate_key_is_refused_at_the_second_key() -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_with_marks("a: 1\nb:\n  c: 2\n  c: 3\n", "f.yaml")
    assert caught.value.message == "duplicate key 'c'"
    assert caught.value.mark == Mark(4, 3)


def test_merge_keys_may_be_overridden() -> None:
    text = "base: &b {x: 1, z: 3}\nother:\n  <<: *b\n  x: 2\n"
    data, _ = load_with_marks(text, "f.yaml")
    assert data["other"] == {"x": 2, "z": 3}


def test_first_merged_mapping_wins_as_in_yaml() -> None:
    text = "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n"
    data, _ = load_with_marks(text, "f.yaml")
    assert data["c"] == {"x": 1, "y": 2}


def test_an_alias_of_a_mapping_with_merges_converts_again() -> None:
    text = "base: &base {x: 1}\na: &a\n  <<: *base\n  x: 2\nb: *a\n"
    data, _ = load_with_marks(text, "f.yaml")
    assert data == {"base": {"x": 1}, "a": {"x": 2}, "b": {"x": 2}}


@pytest.mark.parametrize(
    ("text", "message", "mark"),
    [
        (
            "a: [1, 2\n",
            "YAML syntax: while parsing a flow sequence, expected ',' or ']', "
            "but got '<stream end>'",
            Mark(2, 1),
        ),
        (
            "a:\n\tb: 1\n",
            "YAML syntax: while scanning for the next token, found character '\\t' "
            "that cannot start any token",
            Mark(2, 1),
        ),
        (
            "a: 1\n---\nb: 2\n",
            "YAML syntax: expected a single document in the stream, but found another document",
            Mark(2, 1),
        ),
    ],
)
def test_syntax_errors_carry_message_and_mark(text: str, message: str, mark: Mark) -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        load_with_marks(text, "f.yaml")
    assert (caught.value.message, caught.value.mark) == (message, mark)


def test_empty_document_is_none() -> None:
    data, source = load_with_marks("# only a comment\n", "f.yaml")
    assert data is None
    assert source.values == {}


def test_lists_of_rules_mark_each_item() -> None:
    data, source = load_with_marks("- id: a\n- id: b\n  trigger: memory\n", "f.yaml")
    assert [item["id"] for item in data] == ["a", "b"]
    assert source.values[(1,)] == Mark(2, 3)
    assert source.values[(1, "trigger")] == Mark(3, 12)
