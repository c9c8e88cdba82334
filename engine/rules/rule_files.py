"""The rules folder as the web editor edits it: read, save, create, rename, delete one rule.

YAML files stay the source of truth. An edit changes only what changed: a one-rule file is
the rule's text; a rule of a list file is spliced back in place, the file's other rules left
byte for byte (engine.rules.rule_yaml). Writes are atomic (a temporary file in the folder,
fsync, os.replace). A file changed on disk since it was read (its etag, the sha256 of its
bytes, differs) raises RuleConflict and is never overwritten. A rule that does not validate
(YAML, the engine's validator, an id another rule already has) is kept as a draft under
`<data_dir>/drafts/<rule_id>.yaml` and the live file is left alone.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec
from ruamel.yaml.comments import CommentedMap

from engine.connector import Registry, default_registry
from engine.errors import BadRuleName, RuleConflict, RuleError, RuleNotFound
from engine.rules.folder_io import atomic_write, check_file_name, check_rule_id, etag_of
from engine.rules.loader import load_text
from engine.rules.rule_yaml import (
    EditError,
    ItemSpan,
    edit_rule_text,
    item_text,
    list_items,
    merge_model,
    remove_item,
    splice,
)
from engine.rules.starters import Starter, starters
from engine.rules.templates import Templates
from engine.rules.yaml_source import YamlSyntaxError, load_with_marks

__all__ = [
    "RuleFolder",
    "RuleSource",
    "SaveResult",
    "Starter",
    "merge_model",
    "parse_rule",
    "starters",
]


class RuleSource(msgspec.Struct):
    """One rule as the editor sees it."""

    rule_id: str
    file: str  # file name inside the rules folder, e.g. "work-to-slack.yaml"
    index: int | None  # position in a list file; None for a one-rule file
    text: str  # the rule's own YAML, comments kept (a one-rule file: the whole file)
    etag: str  # sha256 hex of the file's bytes when read (a draft: of the draft's bytes)
    enabled: bool


class SaveResult(msgspec.Struct):
    status: str  # "saved" | "draft"
    rule_id: str
    file: str
    etag: str  # of the file after the write; "" for a draft
    errors: list[dict[str, Any]]  # {"line", "column", "message"} at lines of the text saved


def _error(line: int, column: int, message: str) -> dict[str, Any]:
    return {"line": line, "column": column, "message": message}


def _rule_id_of(raw: Any, default: str) -> str:
    rule_id = raw.get("id") if isinstance(raw, dict) else None
    return rule_id if isinstance(rule_id, str) and rule_id else default


def parse_rule(
    text: str,
    *,
    file: str = "rule.yaml",
    default_id: str | None = None,
    registry: Registry | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The rule in `text` as plain JSON data (None when it is not YAML or not a mapping) and
    its errors from the engine's own validator, at lines of `text`."""
    try:
        raw, _ = load_with_marks(text, file)
    except YamlSyntaxError as exc:
        return None, [_error(exc.mark.line, exc.mark.column, exc.message)]
    if not isinstance(raw, dict):
        kind = "nothing" if raw is None else type(raw).__name__
        return None, [_error(1, 1, f"a rule is a YAML mapping (key: value lines), got {kind}")]
    _, errors, _ = load_text(
        text, file, registry or default_registry(), Templates(), default_id=default_id
    )
    return msgspec.to_builtins(raw, str_keys=True), [_rule_error(e) for e in errors]


def _rule_error(error: RuleError) -> dict[str, Any]:
    return _error(error.line or 1, error.column or 1, error.message)


class _Located(msgspec.Struct):
    rule_id: str
    file: str
    index: int | None
    enabled: bool


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[RuleFolder, _P], _R],
) -> Callable[Concatenate[RuleFolder, _P], _R]:
    def locked(self: RuleFolder, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    functools.update_wrapper(locked, method)
    return locked


class RuleFolder:
    """The rule files of `rules_dir`, edited one rule at a time; drafts in `data_dir`."""

    def __init__(
        self, rules_dir: str | Path, data_dir: str | Path, registry: Registry | None = None
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.drafts_dir = Path(data_dir) / "drafts"
        self.registry = registry or default_registry()
        # one edit at a time: the etag check and the write it guards are not interleaved
        self._lock = threading.RLock()

    # ---- reading

    def files(self) -> list[str]:
        """The rule files' names, in the loader's order (no *.test.yaml case files)."""
        if not self.rules_dir.is_dir():
            return []
        return sorted(
            p.name
            for p in self.rules_dir.iterdir()
            if p.suffix in (".yaml", ".yml")
            and not p.name.endswith((".test.yaml", ".test.yml"))
            and p.is_file()
        )

    def _read_file(self, file: str) -> tuple[str, str]:
        data = (self.rules_dir / file).read_bytes()
        return data.decode("utf-8"), etag_of(data)

    def _rules_of(self, file: str, text: str) -> list[_Located]:
        try:
            raw, _ = load_with_marks(text, file)
        except YamlSyntaxError:
            return []
        stem = Path(file).stem
        if isinstance(raw, dict):
            items: list[tuple[int | None, Any, str]] = [(None, raw, stem)]
        elif isinstance(raw, list):
            items = [(i, item, f"{stem}-{i + 1}") for i, item in enumerate(raw)]
        else:
            return []
        located = []
        for index, item, default in items:
            enabled = not (isinstance(item, dict) and item.get("enabled") is False)
            located.append(_Located(_rule_id_of(item, default), file, index, enabled))
        return located

    def _all_rules(self) -> list[_Located]:
        rules = []
        for file in self.files():
            try:
                text, _ = self._read_file(file)
            except (OSError, UnicodeDecodeError):
                continue
            rules.extend(self._rules_of(file, text))
        return rules

    def _locate(self, rule_id: str) -> _Located:
        for rule in self._all_rules():
            if rule.rule_id == rule_id:
                return rule
        raise RuleNotFound(f"no rule with id {rule_id!r}", rule_id=rule_id)

    def rule_ids(self) -> list[str]:
        return [rule.rule_id for rule in self._all_rules()]

    def read(self, rule_id: str) -> RuleSource:
        """The rule's own text and its file's etag; RuleNotFound when no file defines it."""
        found = self._locate(rule_id)
        text, etag = self._read_file(found.file)
        return RuleSource(
            rule_id, found.file, found.index, self._own_text(text, found), etag, found.enabled
        )

    def _span(self, text: str, found: _Located) -> ItemSpan:
        spans = list_items(text)
        if spans is None or found.index is None or found.index >= len(spans):
            raise RuleConflict(
                f"{found.file} is not a block list of rules: edit it as a whole",
                file=found.file,
                rule_id=found.rule_id,
            )
        return spans[found.index]

    def _own_text(self, text: str, found: _Located) -> str:
        return text if found.index is None else item_text(text, self._span(text, found))

    # ---- writing

    @_locked
    def save(self, rule_id: str, text: str, etag: str) -> SaveResult:
        """Replace the rule `rule_id` with `text` (one rule), the rest of its file untouched.

        `etag` is the file's when the rule was read: a different one now raises RuleConflict.
        A text that does not validate is kept as a draft (status "draft"); a text that
        changes the id renames the rule.
        """
        found = self._locate(rule_id)
        current = self._current(found, etag)
        return self._write_rule(found, current, text)

    def _current(self, found: _Located, etag: str | None, *, whole: bool = False) -> str:
        text, now = self._read_file(found.file)
        if etag is not None and etag != now:
            try:
                own = text if whole else self._own_text(text, found)
            except RuleConflict:
                own = ""
            raise RuleConflict(
                f"{found.file} changed on disk since it was read: reload it before saving",
                file=found.file,
                rule_id=found.rule_id,
                etag=now,
                text=own,
            )
        return text

    def _write_rule(self, found: _Located, current: str, text: str) -> SaveResult:
        default = Path(found.file).stem
        if found.index is not None:
            default = f"{default}-{found.index + 1}"
        new_id, errors = self._validate(text, found.file, default, skip=found)
        if errors:
            return self._keep_draft(found.rule_id, found.file, text, errors)
        if found.index is None:
            new_file_text = text
        else:
            new_file_text = splice(current, self._span(current, found), text)
        etag = self._replace(found.file, new_file_text)
        self.discard_draft(found.rule_id)
        return SaveResult("saved", new_id, found.file, etag, [])

    def _validate(
        self, text: str, file: str, default_id: str, skip: _Located | None
    ) -> tuple[str, list[dict[str, Any]]]:
        raw, errors = parse_rule(text, file=file, default_id=default_id, registry=self.registry)
        new_id = _rule_id_of(raw, default_id)
        if raw is None or errors:
            return new_id, errors
        for other in self._all_rules():
            if other.rule_id != new_id:
                continue
            if skip is not None and (other.file, other.index) == (skip.file, skip.index):
                continue
            line = _located_id_line(text)
            return new_id, [_error(line, 1, f"duplicate rule id '{new_id}' (also in {other.file})")]
        return new_id, []

    def _keep_draft(
        self, rule_id: str, file: str, text: str, errors: list[dict[str, Any]]
    ) -> SaveResult:
        self.drafts_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self._draft_path(rule_id), text)
        return SaveResult("draft", rule_id, file, "", errors)

    def _draft_path(self, rule_id: str) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", rule_id).lstrip(".") or "untitled"
        return self.drafts_dir / f"{name}.yaml"

    def _replace(self, file: str, text: str) -> str:
        path = self.rules_dir / check_file_name(file)
        atomic_write(path, text)
        return etag_of(text.encode("utf-8"))

    def _create_file(self, file: str, text: str, rule_id: str) -> str:
        """Write a new file; BadRuleName when one of that name exists (never overwritten)."""
        path = self.rules_dir / check_file_name(file, rule_id)
        try:
            atomic_write(path, text, overwrite=False)
        except FileExistsError:
            raise BadRuleName(f"{file} already exists", file=file, rule_id=rule_id) from None
        return etag_of(text.encode("utf-8"))

    @_locked
    def create(self, text: str, file: str | None = None) -> SaveResult:
        """A new rule in a new file (`file`, or `<id>.yaml`); invalid text -> a draft."""
        if file is not None:
            check_file_name(file)
        try:
            raw, _ = load_with_marks(text, file or "new.yaml")
        except YamlSyntaxError:
            raw = None
        stem = Path(file).stem if file else ""
        rule_id = _rule_id_of(raw, stem)
        if not rule_id:
            error = _error(1, 1, "a new rule needs an id (id: my-rule)")
            return self._keep_draft("untitled", "", text, [error])
        check_rule_id(rule_id, file or "")
        file = file or f"{rule_id}.yaml"
        new_id, errors = self._validate(text, file, stem or rule_id, skip=None)
        if errors:
            return self._keep_draft(rule_id, file, text, errors)
        etag = self._create_file(file, text, new_id)
        self.discard_draft(new_id)
        return SaveResult("saved", new_id, file, etag, [])

    @_locked
    def set_enabled(self, rule_id: str, enabled: bool, etag: str | None = None) -> SaveResult:
        """Flip the rule's `enabled:` key, nothing else of the file changed."""
        found = self._locate(rule_id)
        current = self._current(found, etag)
        own = self._own_text(current, found)
        return self._write_rule(found, current, _edited(own, found, _set_enabled(enabled)))

    @_locked
    def duplicate(self, rule_id: str, new_id: str) -> SaveResult:
        """A copy of the rule (comments kept) with id `new_id`, in a new file `<new_id>.yaml`."""
        check_rule_id(new_id)
        found = self._locate(rule_id)
        own = self._own_text(self._read_file(found.file)[0], found)
        return self.create(_edited(own, found, _set_id(new_id)), f"{new_id}.yaml")

    @_locked
    def rename(self, rule_id: str, new_id: str, etag: str | None = None) -> SaveResult:
        """Give the rule id `new_id`; a one-rule file named after the old id is renamed too."""
        check_rule_id(new_id)
        found = self._locate(rule_id)
        if new_id != rule_id and new_id in self.rule_ids():
            raise BadRuleName(f"rule id {new_id!r} is taken", file=found.file, rule_id=new_id)
        current = self._current(found, etag)
        own = self._own_text(current, found)
        if found.index is not None or Path(found.file).stem != rule_id:
            return self._write_rule(found, current, _edited(own, found, _set_id(new_id)))
        text = _edited(own, found, _set_id(new_id, only_if_present=True))
        new_file = f"{new_id}.yaml"
        _, errors = self._validate(text, new_file, new_id, skip=found)
        if errors:
            return self._keep_draft(rule_id, found.file, text, errors)
        etag_after = self._create_file(new_file, text, new_id)
        (self.rules_dir / found.file).unlink()
        self.discard_draft(rule_id)
        return SaveResult("saved", new_id, new_file, etag_after, [])

    @_locked
    def delete(self, rule_id: str, etag: str | None = None) -> None:
        """Remove the rule: its file, or its item of a list file (others untouched)."""
        found = self._locate(rule_id)
        current = self._current(found, etag)
        path = self.rules_dir / check_file_name(found.file, rule_id)
        if found.index is None:
            path.unlink()
        else:
            spans = list_items(current) or []
            remaining = remove_item(current, self._span(current, found))
            if len(spans) <= 1:
                path.unlink()
            else:
                atomic_write(path, remaining)
        self.discard_draft(rule_id)

    # ---- whole files (a file whose YAML is broken has no rule to find by id)

    def read_file(self, file: str) -> RuleSource:
        """A rule file as a whole: `rule_id` is its rule's id (a list file's: its stem)."""
        check_file_name(file)
        try:
            text, etag = self._read_file(file)
        except FileNotFoundError:
            raise RuleNotFound(f"no rule file {file!r}", file=file) from None
        rules = self._rules_of(file, text)
        rule_id = rules[0].rule_id if len(rules) == 1 and rules[0].index is None else ""
        enabled = all(rule.enabled for rule in rules)
        return RuleSource(rule_id or Path(file).stem, file, None, text, etag, enabled)

    @_locked
    def save_file(self, file: str, text: str, etag: str) -> SaveResult:
        """Replace a whole rule file (one rule or a list); errors at lines of the file's text.
        Invalid text is kept as the draft `<stem>`; a stale etag raises RuleConflict."""
        source = self.read_file(file)
        found = _Located(source.rule_id, file, None, source.enabled)
        self._current(found, etag, whole=True)
        rules, errors, _ = load_text(text, file, self.registry, Templates())
        problems = [_rule_error(error) for error in errors]
        ids = [rule.id for rule in rules]
        if not problems:
            taken = {r.rule_id: r.file for r in self._all_rules() if r.file != file}
            for rule in rules:
                if rule.id in taken or ids.count(rule.id) > 1:
                    where = taken.get(rule.id, file)
                    message = f"duplicate rule id '{rule.id}' (also in {where})"
                    problems.append(_error(rule.line, 1, message))
        stem = Path(file).stem
        if problems:
            return self._keep_draft(stem, file, text, problems)
        etag_after = self._replace(file, text)
        self.discard_draft(stem)
        rule_id = ids[0] if len(ids) == 1 and not text.lstrip().startswith("-") else stem
        return SaveResult("saved", rule_id, file, etag_after, [])

    # ---- drafts

    def drafts(self) -> list[RuleSource]:
        if not self.drafts_dir.is_dir():
            return []
        found = [self.draft(p.stem) for p in sorted(self.drafts_dir.glob("*.yaml"))]
        return [source for source in found if source is not None]

    def draft(self, rule_id: str) -> RuleSource | None:
        """The draft kept for `rule_id`, if any (etag: of the draft's bytes)."""
        path = self._draft_path(rule_id)
        if not path.is_file():
            return None
        data = path.read_bytes()
        text = data.decode("utf-8")
        try:
            live = self._locate(rule_id)
            file, index = live.file, live.index
        except RuleNotFound:
            file, index = f"{path.stem}.yaml", None
        model, _ = parse_rule(text, file=file, registry=self.registry)
        enabled = not (model is not None and model.get("enabled") is False)
        return RuleSource(rule_id, file, index, text, etag_of(data), enabled)

    def discard_draft(self, rule_id: str) -> None:
        self._draft_path(rule_id).unlink(missing_ok=True)


def _edited(text: str, found: _Located, change: Callable[[CommentedMap], None]) -> str:
    try:
        return edit_rule_text(text, change)
    except EditError as exc:
        raise RuleConflict(
            f"{found.file}: cannot edit rule {found.rule_id!r}: {exc}",
            file=found.file,
            rule_id=found.rule_id,
        ) from None


def _set_enabled(enabled: bool) -> Callable[[CommentedMap], None]:
    def change(data: CommentedMap) -> None:
        if "enabled" in data or not enabled:
            _put(data, "enabled", enabled)

    return change


def _set_id(new_id: str, *, only_if_present: bool = False) -> Callable[[CommentedMap], None]:
    def change(data: CommentedMap) -> None:
        if "id" in data or not only_if_present:
            _put(data, "id", new_id)

    return change


def _put(data: CommentedMap, key: str, value: Any) -> None:
    """Set `key`, a new one after `id`/`description` (else first), where people look."""
    if key in data:
        data[key] = value
        return
    keys = list(data)
    position = max((keys.index(k) + 1 for k in ("id", "description") if k in keys), default=0)
    data.insert(position, key, value)


def _located_id_line(text: str) -> int:
    try:
        raw, source = load_with_marks(text, "rule.yaml")
    except YamlSyntaxError:
        return 1
    return source.keys[("id",)].line if isinstance(raw, dict) and "id" in raw else 1
