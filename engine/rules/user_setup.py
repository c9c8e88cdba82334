"""What an Omi user must set up: the per-user settings (`settings:`) of the rules that apply
to them, and the text for the Omi app submission form (`omi-rules setup-instructions`).

A rule applies to a uid when it is enabled, its `uids` (if any) name the uid, and the
server's own secrets it needs are set. Settings are declared per rule (there is no folder-level
declaration): a setting declared by several rules is one setting (the first declaration, in
rule order, gives its label, help and type); it is required when any applying rule requires
it, and secret when any declares it secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.rules.compiled import CompiledRule, RuleSet
from engine.rules.rule_model import UserSetting
from engine.secrets import Secrets
from engine.triggers import default_triggers


@dataclass
class SetupField:
    """One setting on the setup page: its declaration, whether any rule requires it, and the
    connectors whose actions read it (each gets a "test" button)."""

    setting: UserSetting
    required: bool = False
    secret: bool = False  # any declaration says so: a value is never stored less protected
    connectors: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.setting.name


def applying_rules(rules: RuleSet, uid: str | None, secrets: Secrets | None) -> list[CompiledRule]:
    """The enabled rules for `uid` (any uid: None) whose server secrets are set (unchecked
    without `secrets`)."""
    return [
        rule
        for rule in rules.rules
        if rule.enabled
        and (uid is None or rule.uids is None or uid in rule.uids)
        and (secrets is None or not secrets.missing(rule.secrets))
    ]


def setup_fields(rules: list[CompiledRule]) -> list[SetupField]:
    """The settings of `rules`, each once, in the order first declared."""
    fields: dict[str, SetupField] = {}
    for rule in rules:
        for setting in rule.settings:
            entry = fields.setdefault(setting.name, SetupField(setting))
            entry.required = entry.required or setting.required
            entry.secret = entry.secret or setting.secret
            entry.rules.append(rule.id)
        for action in rule.actions:
            for name in sorted(rule.action_settings.get(action.index, ())):
                reader = fields.get(name)
                if reader is not None and action.name not in reader.connectors:
                    reader.connectors.append(action.name)
    return list(fields.values())


def connectors_to_test(rules: list[CompiledRule]) -> list[str]:
    """The connectors whose actions read a per-user setting, in rule order."""
    names: list[str] = []
    for rule in rules:
        for action in rule.actions:
            if rule.action_settings.get(action.index) and action.name not in names:
                names.append(action.name)
    return names


def setup_instructions(rules: RuleSet, base_url: str) -> str:
    """The text for Omi's app submission form, from the rules' triggers and settings."""
    base = base_url.rstrip("/")
    enabled = applying_rules(rules, None, None)
    triggers = default_triggers()
    used = {rule.trigger for rule in enabled}
    lines = ["Webhook URL (one per trigger the app uses):"]
    for definition in triggers.webhooks():
        if definition.name in used or not used:
            lines.append(f"  {definition.name}: {base}{definition.endpoint}")
    lines += [
        "",
        f"Setup Completed URL: {base}/setup/completed",
        f"Auth URL: {base}/setup",
        "",
        "Setup Instructions:",
    ]
    fields = setup_fields(enabled)
    if not fields:
        lines.append("  Nothing to set up: the app works as soon as it is enabled.")
        return "\n".join(lines) + "\n"
    lines.append(
        "  After enabling the app, open its setup page (Omi opens it for you) and fill in:"
    )
    for entry in fields:
        setting = entry.setting
        kind = "secret" if entry.secret else setting.type
        need = "required" if entry.required else "optional"
        lines.append(f"  - {setting.label or setting.name} ({kind}, {need})")
        if setting.help:
            lines.append(f"    {setting.help}")
    lines += [
        '  Press each "test" button to check the connection, then "Save". Secrets are',
        '  stored encrypted and never shown again; to change one, press "Disconnect" and',
        "  enter it anew.",
    ]
    return "\n".join(lines) + "\n"
