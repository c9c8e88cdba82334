"""Load `rules/*.yaml` into compiled rules, reporting every error with file and line.

A file holds one rule (a mapping) or a list of rules. Each rule is decoded and compiled on
its own: a broken rule is left out with its errors, the others load. JSONPath, regexes,
keyword phrases and templates are all compiled here, never per event.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import Any

import msgspec
from msgspec import UNSET

from engine.connector import Registry, advice_of, default_registry, trigger_errors_of
from engine.durations import parse_duration
from engine.errors import RuleError
from engine.rules.compiled import CompiledAction, CompiledRule, RuleSet
from engine.rules.conditions import compile_conditions
from engine.rules.jsonpaths import JsonPathSyntax, compile_jsonpath
from engine.rules.rule_decode import INVALID, DecodeContext, decode_actions, decode_struct
from engine.rules.rule_model import Condition, Rule
from engine.rules.templates import (
    COMMON_NAMES,
    Templates,
    TemplateSyntax,
    setting_names,
    template_strings,
)
from engine.rules.trust import literal_hosts
from engine.rules.yaml_source import Path, SourceMap, YamlSyntaxError, load_with_marks

log = logging.getLogger("omi_rules.rules")


def display_path(path: FsPath) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


class RuleCompiler:
    """Decodes and compiles the rules of one file, recording errors with their marks."""

    def __init__(self, source: SourceMap, registry: Registry, templates: Templates) -> None:
        self.source = source
        self.registry = registry
        self.templates = templates
        self.trigger = "memory"
        self.allowed_names: frozenset[str] = COMMON_NAMES
        self.secrets: set[str] = set()
        self.settings_read: set[str] = set()  # user.settings.NAME the rule's templates read
        self.decoder = DecodeContext(source, None, registry)

    @property
    def errors(self) -> list[RuleError]:
        return self.decoder.errors

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.decoder.error(path, message, key=key)

    def warn(self, path: Path, message: str) -> None:
        """A problem that does not stop the rule (shown by validate and at load)."""
        self.warnings.append(self.decoder.at(path, message))

    def template(self, source: str, path: Path) -> None:
        """Check one template string; record an error and re-raise TemplateSyntax if bad."""
        try:
            self.secrets |= self.templates.check(
                source, trigger=self.trigger, allowed_extra=self.allowed_names
            )
            self.templates.compile(source)
            self.settings_read |= setting_names(source)
        except TemplateSyntax as exc:
            line = f" (template line {exc.line})" if exc.line > 1 else ""
            self.error(path, f"{self.decoder.describe(path)}: {exc.message}{line}")
            raise

    def compile(self, raw: Any, path: Path, default_id: str) -> CompiledRule | None:
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        self.decoder.rule_id = str(rule_id) if isinstance(rule_id, str) and rule_id else default_id
        self.decoder.base = path
        before = len(self.errors)
        spec = decode_struct(raw, Rule, path, self.decoder)
        if spec is INVALID:
            return None
        self.trigger = spec.trigger
        self.secrets = set()
        self.settings_read = set()
        self.action_settings: dict[int, frozenset[str]] = {}
        self.warnings: list[RuleError] = []
        names = set(COMMON_NAMES)
        if spec.for_each is not None:
            names.add("item")
        if _has_keywords(spec.when):
            names.add("match")
        self.allowed_names = frozenset(names)
        predicate = compile_conditions(spec.when, (*path, "when"), self)
        if spec.for_each is not None:
            try:
                compile_jsonpath(spec.for_each)
            except JsonPathSyntax as exc:
                self.error((*path, "for_each"), f"for_each: {exc}")
        elif spec.for_each_limit is not None:
            self.error(
                (*path, "for_each_limit"), "'for_each_limit' only goes with 'for_each'", key=True
            )
        cooldown = None
        if spec.cooldown is not None:
            try:
                cooldown = parse_duration(spec.cooldown)
            except ValueError as exc:
                self.error((*path, "cooldown"), f"cooldown: {exc}")
        actions = self._compile_actions(spec.do, (*path, "do"))
        self._check_settings(spec, path)
        if len(self.errors) > before:
            return None
        mark = self.source.mark_of(path)
        return CompiledRule(
            id=self.decoder.rule_id or default_id,
            spec=spec,
            file=self.source.file,
            line=mark.line,
            predicate=predicate,
            actions=actions,
            secrets=frozenset(self.secrets),
            cooldown=cooldown,
            uids=frozenset(spec.uids) if spec.uids is not None else None,
            trusted_hosts=frozenset().union(*(_named_hosts(action) for action in actions)),
            warnings=self.warnings,
            settings=tuple(spec.settings),
            required_settings=frozenset(s.name for s in spec.settings if s.required),
            action_settings=self.action_settings,
        )

    def _check_settings(self, spec: Rule, path: Path) -> None:
        """Each setting declared once; each `user.settings.NAME` a template reads declared."""
        declared: set[str] = set()
        for index, setting in enumerate(spec.settings):
            if setting.name in declared:
                self.error(
                    (*path, "settings", index, "name"),
                    f"settings[{index}].name: '{setting.name}' is declared twice",
                )
            declared.add(setting.name)
        for name in sorted(self.settings_read - declared):
            known = ", ".join(sorted(declared)) or "none declared"
            self.error(
                path,
                f"templates read user.settings.{name}, which the rule's `settings:` does not "
                f"declare ({known})",
            )

    def _compile_actions(self, raw: list[dict[str, Any]], path: Path) -> list[CompiledAction]:
        compiled = []
        for index, decoded in enumerate(decode_actions(raw, path, self.decoder)):
            if decoded is INVALID:
                continue
            name, options = decoded
            connector = self.registry[name]
            option_path = (*path, index, name)
            reads: set[str] = set()
            for key, value in msgspec.to_builtins(options).items():
                for sub, text in template_strings(value):
                    reads |= setting_names(text)
                    try:
                        self.template(text, (*option_path, key, *_sub_path(sub)))
                    except TemplateSyntax:
                        pass  # recorded; keep checking the other options
            for option, message in connector.validate(options):
                self.error((*option_path, option) if option else option_path, f"{name}: {message}")
            for option, message in trigger_errors_of(connector, options, self.trigger):
                self.error((*option_path, option) if option else option_path, f"{name}: {message}")
            for option, message in advice_of(connector, options, self.trigger):
                self.warn((*option_path, option) if option else option_path, f"{name}: {message}")
            self.secrets |= connector.required_secrets(options)
            self.action_settings[index] = frozenset(reads)
            compiled.append(CompiledAction(index, connector, options))
        return compiled


def _named_hosts(action: CompiledAction) -> frozenset[str]:
    """Hosts the action's options name literally, defaults and the connector's own
    `default_urls` included (engine.rules.trust)."""
    options = msgspec.structs.asdict(action.options)
    return literal_hosts(options) | literal_hosts(getattr(action.connector, "default_urls", ()))


def _sub_path(sub: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in sub.replace("[", ".[").split("."):
        if piece.startswith("["):
            parts.append(int(piece[1:-1]))
        elif piece:
            parts.append(piece)
    return parts


def _has_keywords(conditions: Iterable[Condition]) -> bool:
    for cond in conditions:
        if cond.keywords is not UNSET:
            return True
        for group in (cond.any, cond.all, cond.not_):
            if group is UNSET:
                continue
            if _has_keywords(group if isinstance(group, list) else [group]):
                return True
    return False


def load_text(
    text: str,
    file: str,
    registry: Registry,
    templates: Templates,
    *,
    default_id: str | None = None,
) -> tuple[list[CompiledRule], list[RuleError], list[str]]:
    """Compile the text of one rule file named `file`: (rules, errors, ids of broken rules).

    Ids default from the file's stem: a one-rule file's rule is `stem` (or `default_id`),
    the rules of a list file are `stem-1`, `stem-2`, ...
    """
    try:
        raw, source = load_with_marks(text, file)
    except YamlSyntaxError as exc:
        return (
            [],
            [RuleError(exc.message, file=file, line=exc.mark.line, column=exc.mark.column)],
            [],
        )
    if raw is None:
        return [], [], []
    compiler = RuleCompiler(source, registry, templates)
    stem = FsPath(file).stem
    if isinstance(raw, dict):
        entries: list[tuple[Path, Any, str]] = [((), raw, default_id or stem)]
    elif isinstance(raw, list):
        entries = [((i,), item, f"{stem}-{i + 1}") for i, item in enumerate(raw)]
    else:
        error = RuleError(
            f"a rule file holds a rule (mapping) or a list of rules, got {type(raw).__name__}",
            file=file,
            line=1,
            column=1,
        )
        return [], [error], []
    rules, broken = [], []
    for path_in_file, item, rule_default_id in entries:
        rule = compiler.compile(item, path_in_file, rule_default_id)
        if rule is None:
            broken.append(compiler.decoder.rule_id or rule_default_id)
        else:
            rules.append(rule)
    errors = sorted(compiler.errors, key=lambda error: (error.line, error.column))
    return rules, errors, broken


def load_file(
    path: FsPath, registry: Registry, templates: Templates
) -> tuple[list[CompiledRule], list[RuleError], list[str]]:
    """Compile one rule file: (rules, errors, ids of broken rules)."""
    file = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [RuleError(f"cannot read: {exc}", file=file, line=1, column=1)], []
    return load_text(text, file, registry, templates)


def rule_files(directory: FsPath) -> list[FsPath]:
    """The rule files of a folder (*.yaml and *.yml, not the rule tests *.test.yaml), in
    name order."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and not p.stem.endswith(".test") and p.is_file()
    )


def broken_reasons(errors: list[RuleError], broken: list[str]) -> dict[str, str]:
    """Each broken rule id with its first error."""
    return {
        rule_id: next((e.message for e in errors if e.rule_id == rule_id), "rule has errors")
        for rule_id in broken
    }


def merge_rules(
    groups: Iterable[list[CompiledRule]],
) -> tuple[list[CompiledRule], list[RuleError], dict[str, str]]:
    """Rules of several files as one list; a repeated id is an error and left out."""
    rules: list[CompiledRule] = []
    errors: list[RuleError] = []
    broken: dict[str, str] = {}
    seen: dict[str, CompiledRule] = {}
    for group in groups:
        for rule in group:
            if rule.id in seen:
                other = seen[rule.id]
                errors.append(
                    RuleError(
                        f"duplicate rule id '{rule.id}' "
                        f"(first defined at {other.file}:{other.line})",
                        file=rule.file,
                        line=rule.line,
                        column=1,
                        rule_id=rule.id,
                    )
                )
                broken[rule.id] = "duplicate rule id"
                continue
            seen[rule.id] = rule
            rules.append(rule)
    return rules, errors, broken


def compile_folder(
    directory: FsPath,
    registry: Registry,
    templates: Templates,
    last_good: dict[str, list[CompiledRule]],
) -> RuleSet:
    """Every rule file of `directory` compiled, at start and on each reload alike.

    `last_good` (file -> the rules it last loaded cleanly) is updated in place: a file that
    now has errors keeps its last good rules when it had any; a deleted file's rules go.
    """
    files = rule_files(directory)
    errors: list[RuleError] = []
    broken: dict[str, str] = {}
    present = set()
    for path in files:
        name = display_path(path)
        present.add(name)
        rules, file_errors, file_broken = load_file(path, registry, templates)
        errors.extend(file_errors)
        broken.update(broken_reasons(file_errors, file_broken))
        if file_errors and name in last_good:
            kept = ", ".join(r.id for r in last_good[name]) or "none"
            log.warning("%s has errors; keeping its last good rules (%s)", name, kept)
            continue
        if not file_errors or rules:
            last_good[name] = rules
    for gone in set(last_good) - present:
        del last_good[gone]
    merged, merge_errors, merge_broken = merge_rules(last_good[name] for name in sorted(last_good))
    errors.extend(merge_errors)
    broken.update(merge_broken)
    if not directory.is_dir():
        errors.append(RuleError(f"rules folder {display_path(directory)} does not exist"))
    return RuleSet(
        rules=merged, errors=errors, files=[display_path(p) for p in files], broken_ids=broken
    )


def load_rules(
    rules_dir: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    templates: Templates | None = None,
) -> RuleSet:
    """Every rule under `rules_dir` (*.yaml and *.yml), compiled; errors collected."""
    return compile_folder(
        FsPath(rules_dir), registry or default_registry(), templates or Templates(), {}
    )
