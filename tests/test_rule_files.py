"""engine.rules.rule_files: the web editor's edits of real rule files in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.connector import default_registry
from engine.errors import BadRuleName, RuleConflict, RuleEditError, RuleNotFound
from engine.rules.loader import load_rules, load_text
from engine.rules.rule_files import (
    RuleFolder,
    SaveResult,
    merge_model,
    parse_rule,
    starters,
)
from engine.rules.rule_yaml import patch_lines
from engine.rules.templates import Templates

EXAMPLES = Path(__file__).resolve().parent.parent / "rules"

ONE_RULE = """\
# Post work talk to Slack.   (a comment the user wrote)
id: work
description: 'single quoted'
trigger: memory
when:
  - path: $.structured.category   # which category
    in: [work,   business]
do:
  - log:
      message: "{{ memory.structured.title }}"
"""

LIST_FILE = """\
# Header of a list file.
- id: first
  trigger: memory
  do:
    - log:
        message: "first"   # kept
# between the rules
- id: second
  description: second rule
  trigger: transcript
  do:
    - log: {message:   'second'}

-   id: third
    trigger: day_summary
    do: [{log: {message: "{{ summary.headline }}"}}]
"""


@pytest.fixture
def folder(tmp_path: Path) -> RuleFolder:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "work.yaml").write_text(ONE_RULE)
    (rules / "many.yaml").write_text(LIST_FILE)
    return RuleFolder(rules, tmp_path / "data")


def live(folder: RuleFolder, name: str) -> str:
    return (folder.rules_dir / name).read_text()


def loads_cleanly(folder: RuleFolder) -> list[str]:
    ruleset = load_rules(folder.rules_dir)
    assert ruleset.errors == []
    return sorted(rule.id for rule in ruleset.rules)


# ---- reading


def test_read_one_rule_file_gives_the_whole_file(folder: RuleFolder) -> None:
    source = folder.read("work")
    assert (source.file, source.index, source.enabled) == ("work.yaml", None, True)
    assert source.text == ONE_RULE
    assert len(source.etag) == 64


def test_read_list_item_gives_that_rule_alone_deindented(folder: RuleFolder) -> None:
    source = folder.read("second")
    assert (source.file, source.index) == ("many.yaml", 1)
    assert source.text == (
        "id: second\ndescription: second rule\ntrigger: transcript\n"
        "do:\n  - log: {message:   'second'}\n"
    )
    third = folder.read("third")
    assert third.text.startswith("id: third\ntrigger: day_summary\n")


def test_unknown_rule_is_not_found(folder: RuleFolder) -> None:
    with pytest.raises(RuleNotFound) as caught:
        folder.read("nope")
    assert caught.value.rule_id == "nope"
    assert isinstance(caught.value, RuleEditError)


def test_ids_default_from_the_stem_like_the_loader(folder: RuleFolder) -> None:
    (folder.rules_dir / "noid.yaml").write_text("trigger: memory\ndo: [{log: {message: x}}]\n")
    (folder.rules_dir / "pair.yaml").write_text(
        "- trigger: memory\n  do: [{log: {message: a}}]\n- trigger: memory\n"
        "  do: [{log: {message: b}}]\n"
    )
    assert {"noid", "pair-1", "pair-2"} <= set(folder.rule_ids())
    assert {"noid", "pair-1", "pair-2"} <= set(loads_cleanly(folder))
    assert folder.read("pair-2").text == "trigger: memory\ndo: [{log: {message: b}}]\n"


def test_case_files_are_not_rule_files(folder: RuleFolder) -> None:
    (folder.rules_dir / "work.test.yaml").write_text("- id: case\n  trigger: memory\n")
    assert "work.test.yaml" not in folder.files()
    assert "case" not in folder.rule_ids()


# ---- set_enabled


def test_set_enabled_keeps_comments_and_quoting(folder: RuleFolder) -> None:
    etag = folder.read("work").etag
    result = folder.set_enabled("work", False, etag)
    assert (result.status, result.errors) == ("saved", [])
    assert live(folder, "work.yaml") == ONE_RULE.replace(
        "description: 'single quoted'\n", "description: 'single quoted'\nenabled: false\n"
    )
    assert folder.read("work").enabled is False
    assert result.etag == folder.read("work").etag != etag
    folder.set_enabled("work", True)
    assert "enabled: true\n" in live(folder, "work.yaml")
    assert "# which category" in live(folder, "work.yaml")


def test_set_enabled_in_a_list_file_leaves_other_rules_byte_for_byte(folder: RuleFolder) -> None:
    folder.set_enabled("second", False)
    expected = LIST_FILE.replace(
        "  description: second rule\n", "  description: second rule\n  enabled: false\n"
    )
    assert live(folder, "many.yaml") == expected
    assert folder.read("second").enabled is False
    assert folder.read("first").enabled is True
    ruleset = load_rules(folder.rules_dir)
    assert {rule.id: rule.enabled for rule in ruleset.rules}["second"] is False


def test_set_enabled_true_on_a_rule_without_the_key_changes_nothing(folder: RuleFolder) -> None:
    before = live(folder, "many.yaml")
    result = folder.set_enabled("third", True)
    assert result.status == "saved"
    assert live(folder, "many.yaml") == before


def test_set_enabled_on_every_example_rule_changes_one_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLES, rules, ignore=shutil.ignore_patterns("*.test.yaml"))
    folder = RuleFolder(rules, tmp_path / "data")
    shipped_off = {rule.id for rule in load_rules(rules).rules if not rule.enabled}
    assert shipped_off == {"published-slack", "published-notion", "published-lights"}
    for rule_id in folder.rule_ids():
        if rule_id in shipped_off:  # rules/published-app.yaml: already `enabled: false`
            continue
        file = folder.read(rule_id).file
        before = live(folder, file).splitlines()
        assert folder.set_enabled(rule_id, False).status == "saved"
        after = live(folder, file).splitlines()
        at = next(i for i, line in enumerate(after) if i >= len(before) or line != before[i])
        assert after[at].strip() == "enabled: false", rule_id
        assert after[:at] + after[at + 1 :] == before
        folder.read(rule_id)
    ruleset = load_rules(rules)
    assert ruleset.errors == []
    assert all(rule.enabled is False for rule in ruleset.rules)


ODD_LIST = """\
  - id: a
    trigger: memory
    do:
    - log:
        message: x
  # between
  -
    id: b   # the dash on a line of its own
    trigger: memory
    do: [{log: {message: y}}]
"""


def test_odd_list_layouts_are_edited_in_place(folder: RuleFolder) -> None:
    (folder.rules_dir / "odd.yaml").write_text(ODD_LIST)
    assert folder.read("a").text == "id: a\ntrigger: memory\ndo:\n- log:\n    message: x\n"
    assert folder.read("b").text.startswith("id: b   # the dash on a line of its own\n")
    folder.set_enabled("b", False)
    folder.set_enabled("a", False)
    assert live(folder, "odd.yaml") == ODD_LIST.replace(
        "  - id: a\n", "  - id: a\n    enabled: false\n"
    ).replace("own\n", "own\n    enabled: false\n")
    folder.delete("a")
    assert live(folder, "odd.yaml") == ODD_LIST[ODD_LIST.index("  # between") :].replace(
        "own\n", "own\n    enabled: false\n"
    )
    assert "b" in loads_cleanly(folder)


# ---- save


def test_save_replaces_only_that_rule_of_a_list_file(folder: RuleFolder) -> None:
    source = folder.read("second")
    text = source.text.replace("'second'", "'changed'") + "# a new trailing comment\n"
    result = folder.save("second", text, source.etag)
    assert result == SaveResult("saved", "second", "many.yaml", result.etag, [])
    after = live(folder, "many.yaml")
    assert after == LIST_FILE.replace(
        "    - log: {message:   'second'}\n",
        "    - log: {message:   'changed'}\n  # a new trailing comment\n",
    )
    assert folder.read("second").text == text
    assert loads_cleanly(folder) == ["first", "second", "third", "work"]


def test_save_one_rule_file_keeps_comments(folder: RuleFolder) -> None:
    source = folder.read("work")
    text = source.text.replace("work,   business", "work,   business, meeting")
    assert folder.save("work", text, source.etag).status == "saved"
    assert live(folder, "work.yaml") == text
    assert "(a comment the user wrote)" in live(folder, "work.yaml")


def test_stale_etag_is_a_conflict_and_the_file_is_not_overwritten(folder: RuleFolder) -> None:
    source = folder.read("second")
    folder.set_enabled("first", False)  # someone else saved the same file meanwhile
    changed = live(folder, "many.yaml")
    with pytest.raises(RuleConflict) as caught:
        folder.save("second", source.text.replace("second rule", "mine"), source.etag)
    assert live(folder, "many.yaml") == changed
    assert caught.value.etag == folder.read("second").etag != source.etag
    assert caught.value.text == folder.read("second").text
    assert (caught.value.file, caught.value.rule_id) == ("many.yaml", "second")
    with pytest.raises(RuleConflict):
        folder.set_enabled("second", False, source.etag)
    with pytest.raises(RuleConflict):
        folder.delete("second", source.etag)
    assert live(folder, "many.yaml") == changed


def test_file_edited_by_hand_is_a_conflict(folder: RuleFolder) -> None:
    source = folder.read("work")
    (folder.rules_dir / "work.yaml").write_text(ONE_RULE + "# edited in vim\n")
    with pytest.raises(RuleConflict):
        folder.save("work", source.text, source.etag)
    assert live(folder, "work.yaml").endswith("# edited in vim\n")


def test_invalid_yaml_becomes_a_draft_with_its_line(folder: RuleFolder) -> None:
    source = folder.read("second")
    broken = source.text.replace("trigger: transcript", "trigger: [transcript")
    result = folder.save("second", broken, source.etag)
    assert (result.status, result.etag, result.file) == ("draft", "", "many.yaml")
    assert result.errors[0]["message"].startswith("YAML syntax")
    assert result.errors[0]["line"] == 4
    assert live(folder, "many.yaml") == LIST_FILE
    draft = folder.draft("second")
    assert draft is not None and draft.text == broken
    assert (folder.drafts_dir / "second.yaml").read_text() == broken
    assert [d.rule_id for d in folder.drafts()] == ["second"]


def test_validation_error_is_a_draft_at_the_line_of_the_text(folder: RuleFolder) -> None:
    source = folder.read("work")
    text = source.text.replace("  - log:\n", "  - slak:\n")
    result = folder.save("work", text, source.etag)
    assert result.status == "draft"
    assert len(result.errors) == 1
    assert result.errors[0]["line"] == 9  # `- slak:` in the submitted text
    assert "slak" in result.errors[0]["message"]
    assert "did you mean 'slack'" in result.errors[0]["message"]
    assert live(folder, "work.yaml") == ONE_RULE
    assert loads_cleanly(folder) == ["first", "second", "third", "work"]


def test_list_item_errors_are_at_lines_of_the_item_text(folder: RuleFolder) -> None:
    source = folder.read("third")
    text = source.text.replace("trigger: day_summary", "trigger: day_sumary")
    result = folder.save("third", text, source.etag)
    assert result.status == "draft"
    assert [(e["line"], e["column"]) for e in result.errors] == [(2, 10)]
    assert "day_sumary" in result.errors[0]["message"]


def test_duplicate_id_with_another_file_is_a_draft(folder: RuleFolder) -> None:
    source = folder.read("work")
    text = source.text.replace("id: work", "id: second")
    result = folder.save("work", text, source.etag)
    assert result.status == "draft"
    assert result.errors == [
        {"line": 2, "column": 1, "message": "duplicate rule id 'second' (also in many.yaml)"}
    ]
    assert live(folder, "work.yaml") == ONE_RULE


def test_a_good_save_discards_the_draft(folder: RuleFolder) -> None:
    source = folder.read("work")
    folder.save("work", "id: work\ntrigger: nope\n", source.etag)
    assert folder.draft("work") is not None
    assert folder.save("work", source.text, source.etag).status == "saved"
    assert folder.draft("work") is None


def test_save_that_changes_the_id_renames_the_rule(folder: RuleFolder) -> None:
    source = folder.read("first")
    result = folder.save("first", source.text.replace("id: first", "id: premier"), source.etag)
    assert (result.status, result.rule_id) == ("saved", "premier")
    assert "premier" in folder.rule_ids() and "first" not in folder.rule_ids()


# ---- create, duplicate, rename, delete


def test_create_writes_a_new_file_named_after_the_id(folder: RuleFolder) -> None:
    text = "# mine\nid: fresh\ntrigger: memory\ndo:\n  - log: {message: hi}\n"
    result = folder.create(text)
    assert (result.status, result.file, result.rule_id) == ("saved", "fresh.yaml", "fresh")
    assert live(folder, "fresh.yaml") == text
    with pytest.raises(BadRuleName):
        folder.create(text.replace("id: fresh", "id: other"), "fresh.yaml")
    assert live(folder, "fresh.yaml") == text


def test_create_without_an_id_is_an_untitled_draft(folder: RuleFolder) -> None:
    result = folder.create("trigger: memory\n")
    assert (result.status, result.rule_id, result.file) == ("draft", "untitled", "")
    assert result.errors == [
        {"line": 1, "column": 1, "message": "a new rule needs an id (id: my-rule)"}
    ]
    assert [d.text for d in folder.drafts()] == ["trigger: memory\n"]
    folder.discard_draft("untitled")
    assert folder.drafts() == []


def test_create_with_a_taken_id_is_a_draft(folder: RuleFolder) -> None:
    result = folder.create("id: first\ntrigger: memory\ndo: [{log: {message: x}}]\n")
    assert result.status == "draft"
    assert "duplicate rule id 'first'" in result.errors[0]["message"]
    assert not (folder.rules_dir / "first.yaml").exists()


def test_duplicate_copies_the_rule_with_its_comments(folder: RuleFolder) -> None:
    result = folder.duplicate("first", "first-copy")
    assert (result.status, result.file) == ("saved", "first-copy.yaml")
    copy = live(folder, "first-copy.yaml")
    assert copy.startswith("id: first-copy\n")
    assert '"first"   # kept' in copy
    assert live(folder, "many.yaml") == LIST_FILE
    assert "first-copy" in loads_cleanly(folder)


def test_rename_a_one_rule_file_renames_the_file(folder: RuleFolder) -> None:
    etag = folder.read("work").etag
    result = folder.rename("work", "job", etag)
    assert (result.status, result.rule_id, result.file) == ("saved", "job", "job.yaml")
    assert not (folder.rules_dir / "work.yaml").exists()
    assert live(folder, "job.yaml") == ONE_RULE.replace("id: work", "id: job")
    assert loads_cleanly(folder) == ["first", "job", "second", "third"]


def test_rename_in_a_list_file_changes_only_the_id_line(folder: RuleFolder) -> None:
    folder.rename("third", "troisieme")
    assert live(folder, "many.yaml") == LIST_FILE.replace("id: third", "id: troisieme")


def test_rename_to_a_taken_id_is_refused(folder: RuleFolder) -> None:
    with pytest.raises(BadRuleName):
        folder.rename("work", "first")
    assert live(folder, "work.yaml") == ONE_RULE


def test_delete_a_list_item_keeps_the_others(folder: RuleFolder) -> None:
    folder.delete("second", folder.read("second").etag)
    after = live(folder, "many.yaml")
    assert "second" not in after
    start = LIST_FILE.index("- id: second")
    end = LIST_FILE.index("\n\n-   id: third") + 1  # the blank line between stays
    assert after == LIST_FILE[:start] + LIST_FILE[end:]
    assert loads_cleanly(folder) == ["first", "third", "work"]
    folder.delete("work")
    assert not (folder.rules_dir / "work.yaml").exists()
    with pytest.raises(RuleNotFound):
        folder.delete("work")


@pytest.mark.parametrize(
    "name",
    [
        "../evil.yaml",
        "sub/x.yaml",
        "/etc/passwd.yaml",
        "..yaml",
        ".hidden.yaml",
        "x.txt",
        "x.test.yaml",
        "a b.yaml",
        "",
        "x..yaml",
    ],
)
def test_bad_file_names_are_refused(folder: RuleFolder, name: str) -> None:
    text = "id: fine\ntrigger: memory\ndo: [{log: {message: x}}]\n"
    with pytest.raises(BadRuleName):
        folder.create(text, name)
    assert sorted(p.name for p in folder.rules_dir.parent.rglob("*") if p.is_file()) == [
        "many.yaml",
        "work.yaml",
    ]


@pytest.mark.parametrize("new_id", ["../x", "a/b", "..", ".x", "", "x y", "-x", "x.test"])
def test_bad_rule_ids_are_refused(folder: RuleFolder, new_id: str) -> None:
    with pytest.raises(BadRuleName):
        folder.duplicate("work", new_id)
    with pytest.raises(BadRuleName):
        folder.rename("work", new_id)
    assert sorted(p.name for p in folder.rules_dir.iterdir()) == ["many.yaml", "work.yaml"]


def test_a_traversing_id_in_the_text_is_refused(folder: RuleFolder) -> None:
    with pytest.raises(BadRuleName):
        folder.create("id: ../../escape\ntrigger: memory\ndo: [{log: {message: x}}]\n")
    assert not list(folder.rules_dir.parent.rglob("escape*"))


def test_writes_leave_no_temporary_files(folder: RuleFolder) -> None:
    folder.set_enabled("second", False)
    folder.duplicate("work", "work-2")
    folder.rename("work-2", "work-3")
    assert sorted(p.name for p in folder.rules_dir.iterdir()) == [
        "many.yaml",
        "work-3.yaml",
        "work.yaml",
    ]


def test_public_names() -> None:
    import engine.rules.rule_files as rule_files

    assert sorted(rule_files.__all__) == sorted(
        [
            "RuleFolder",
            "RuleSource",
            "SaveResult",
            "Starter",
            "merge_model",
            "parse_rule",
            "starters",
        ]
    )
    assert all(hasattr(rule_files, name) for name in rule_files.__all__)


# ---- whole files


def test_a_file_with_broken_yaml_is_repaired_as_a_whole(folder: RuleFolder) -> None:
    broken = "# half typed\nid: half\ntrigger: [memory\n"
    (folder.rules_dir / "half.yaml").write_text(broken)
    with pytest.raises(RuleNotFound):
        folder.read("half")
    source = folder.read_file("half.yaml")
    assert (source.rule_id, source.text, source.index) == ("half", broken, None)
    still = folder.save_file("half.yaml", broken.replace("[memory", "[memory,"), source.etag)
    assert (still.status, still.rule_id) == ("draft", "half")
    assert still.errors[0]["message"].startswith("YAML syntax")
    assert live(folder, "half.yaml") == broken
    fixed = broken.replace("[memory", "memory") + "do: [{log: {message: x}}]\n"
    result = folder.save_file("half.yaml", fixed, source.etag)
    assert (result.status, result.rule_id, result.errors) == ("saved", "half", [])
    assert live(folder, "half.yaml") == fixed
    assert folder.draft("half") is None
    assert "half" in loads_cleanly(folder)


def test_save_file_checks_ids_across_and_inside_files(folder: RuleFolder) -> None:
    source = folder.read_file("many.yaml")
    assert (source.rule_id, source.index) == ("many", None)
    text = source.text.replace("id: third", "id: work")
    result = folder.save_file("many.yaml", text, source.etag)
    assert result.errors == [
        {"line": 14, "column": 1, "message": "duplicate rule id 'work' (also in work.yaml)"}
    ]
    text = source.text.replace("id: third", "id: first")
    assert (
        "duplicate rule id 'first'"
        in folder.save_file("many.yaml", text, source.etag).errors[0]["message"]
    )
    assert live(folder, "many.yaml") == LIST_FILE
    with pytest.raises(RuleConflict):
        folder.save_file("many.yaml", LIST_FILE, "0" * 64)
    with pytest.raises(BadRuleName):
        folder.read_file("../many.yaml")


# ---- parse_rule, merge_model, starters


def test_parse_rule_gives_the_model_and_errors() -> None:
    model, errors = parse_rule(ONE_RULE)
    assert errors == []
    assert model is not None and model["when"][0]["in"] == ["work", "business"]
    model, errors = parse_rule("id: x\ntrigger: memory\ndo: []\n")
    assert model == {"id": "x", "trigger": "memory", "do": []}
    assert errors and errors[0]["line"] == 3
    assert parse_rule("- a\n- b\n")[0] is None
    assert parse_rule("a: [\n")[1][0]["message"].startswith("YAML syntax")


def test_merge_model_keeps_comments_quotes_and_order() -> None:
    model, _ = parse_rule(ONE_RULE)
    assert model is not None
    assert merge_model(ONE_RULE, model) == ONE_RULE
    model["when"][0]["in"].append("meeting")
    model["do"][0]["log"]["message"] = "{{ memory.structured.overview }}"
    model["cooldown"] = "5m"
    merged = merge_model(ONE_RULE, model)
    assert merged.splitlines()[:5] == ONE_RULE.splitlines()[:5]
    assert "  - path: $.structured.category   # which category\n" in merged
    assert '      message: "{{ memory.structured.overview }}"\n' in merged  # still double quoted
    assert merged.endswith("cooldown: 5m\n")
    assert parse_rule(merged)[0] == model


def test_merge_model_removes_keys_and_quotes_yaml11_words() -> None:
    model, _ = parse_rule(ONE_RULE)
    assert model is not None
    del model["description"]
    model["do"][0]["log"]["message"] = "yes"
    merged = merge_model(ONE_RULE, model)
    assert "description" not in merged
    assert 'message: "yes"' in merged or "message: 'yes'" in merged
    assert yaml.safe_load(merged)["do"][0]["log"]["message"] == "yes"
    assert "# Post work talk to Slack." in merged


def test_merge_model_deleting_a_key_keeps_the_comment_above_the_next() -> None:
    text = "# head\na: 1  # about a\n# about b\nb: 2\nc:\n  x: 1\n  # about y\n  y: 2\n"
    merged = merge_model(text, {"b": 2, "c": {"y": 2}})
    assert merged == "# head\n# about b\nb: 2\nc:\n  # about y\n  y: 2\n"


def test_merge_model_onto_empty_text() -> None:
    model = {"id": "n", "trigger": "memory", "do": [{"log": {"message": "x"}}]}
    assert yaml.safe_load(merge_model("", model)) == model


def test_patch_lines_keeps_lines_ruamel_would_respell() -> None:
    original = "a:   1\nb: [x,y]\n"
    baseline = "a: 1\nb: [x, y]\n"
    assert patch_lines(original, baseline, "a: 1\nb: [x, y]\nc: 2\n") == original + "c: 2\n"
    assert patch_lines(original, baseline, "a: 2\nb: [x, y]\n") == "a: 2\nb: [x,y]\n"


def test_every_starter_validates() -> None:
    names = [starter.name for starter in starters()]
    assert names == [
        "blank",
        "work-to-slack",
        "action-items-to-notion",
        "voice-to-home-assistant",
        "daily-summary-email",
    ]
    for starter in starters():
        rules, errors, broken = load_text(
            starter.text, f"{starter.name}.yaml", default_registry(), Templates()
        )
        assert (errors, broken) == ([], []), starter.name
        assert len(rules) == 1 and rules[0].enabled
        assert starter.text.startswith("#") and starter.title


def test_a_starter_creates_a_rule(folder: RuleFolder) -> None:
    result = folder.create(starters()[1].text)
    assert (result.status, result.file) == ("saved", "my-work-to-slack.yaml")
    assert "my-work-to-slack" in loads_cleanly(folder)


# ---- property: merging a rule's own model changes nothing; a new model comes back


SCALARS = st.one_of(
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(
        st.characters(
            codec="utf-8", categories=["L", "N", "P", "S", "Zs"], include_characters="\n\t"
        ),
        max_size=12,
    ),
)
KEYS = st.text("abcdefgh_", min_size=1, max_size=6)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
MODELS = st.dictionaries(KEYS, VALUES, min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(MODELS, MODELS, st.booleans())
def test_merge_model_round_trips(first: dict, second: dict, flow: bool) -> None:
    text = "# a comment kept\n" + yaml.safe_dump(first, default_flow_style=flow, sort_keys=False)
    assert merge_model(text, first) == text
    merged = merge_model(text, second)
    assert yaml.safe_load(merged) == second
    assert merged.startswith("# a comment kept\n")
