"""The `omi-rules` command: each subcommand is a thin layer over one engine function."""

from __future__ import annotations

import json
import sys

import click
import msgspec

from engine.dryrun import dry_run_files
from engine.errors import OmiRulesError, PayloadError
from engine.loader import RuleSet, load_rules
from engine.report_text import format_report
from engine.rule_model import TRIGGERS
from engine.schema import rule_file_schema
from engine.secrets import ENV_PREFIX, Secrets

rules_option = click.option(
    "--rules",
    "rules_dir",
    default="rules",
    show_default=True,
    envvar="OMI_RULES_RULES",
    type=click.Path(file_okay=False),
    help="Folder of rule files (*.yaml).",
)
secrets_option = click.option(
    "--secrets",
    "secrets_file",
    default=None,
    envvar="OMI_RULES_SECRETS",
    type=click.Path(dir_okay=False, exists=True),
    help=f"Secrets file (YAML or NAME=value lines); {ENV_PREFIX}<NAME> variables also count.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="omi-rules")
def main() -> None:
    """omi-rules: YAML automations for Omi webhooks."""


def report_rule_errors(ruleset: RuleSet) -> None:
    for error in ruleset.errors:
        click.echo(str(error), err=True)


@main.command()
@rules_option
@secrets_option
def validate(rules_dir: str, secrets_file: str | None) -> None:
    """Check every rule file; print each error as file:line:col: rule <id>: message."""
    ruleset = load_rules(rules_dir)
    report_rule_errors(ruleset)
    secrets = Secrets.load(secrets_file)
    for rule in ruleset.rules:
        missing = secrets.missing(rule.secrets)
        if missing:
            click.echo(
                f"note: {rule.file}:{rule.line}: rule {rule.id}: will be skipped while "
                f"these secrets are unset: {', '.join(missing)}",
                err=True,
            )
    files = len(ruleset.files)
    if ruleset.errors:
        click.echo(
            f"{len(ruleset.errors)} error(s) in {files} file(s); "
            f"{len(ruleset.rules)} rule(s) valid",
            err=True,
        )
        sys.exit(1)
    click.echo(f"ok: {len(ruleset.rules)} rule(s) in {files} file(s) are valid")


@main.command("dry-run")
@click.option("--trigger", type=click.Choice(TRIGGERS), help="Which webhook the payloads are.")
@click.option(
    "--payload",
    "payloads",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Payload file; several are one stream, in order.",
)
@rules_option
@secrets_option
@click.option("--uid", default="user123", show_default=True)
@click.option("--session", default="", help="Transcript session id (default: the uid).")
@click.option(
    "--sample-rate",
    default=8000,
    show_default=True,
    type=int,
    help="Sample rate of audio payloads.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event, per line.")
def dry_run(
    trigger: str | None,
    payloads: tuple[str, ...],
    rules_dir: str,
    secrets_file: str | None,
    uid: str,
    session: str,
    sample_rate: int,
    as_json: bool,
) -> None:
    """Show what the rules would do with payloads; nothing is sent."""
    if not trigger or not payloads:
        raise click.UsageError("give --trigger and at least one --payload")
    ruleset = load_rules(rules_dir)
    report_rule_errors(ruleset)
    secrets = Secrets.load(secrets_file)
    reports = dry_run_files(
        trigger,
        list(payloads),
        uid=uid,
        session=session,
        sample_rate=sample_rate,
        secrets=secrets,
        rules=ruleset,
    )
    try:
        for path, report in zip(payloads, reports, strict=False):
            if as_json:
                click.echo(msgspec.json.encode(report).decode())
            else:
                click.echo(format_report(report, path))
    except PayloadError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@main.command()
def schema() -> None:
    """Print the JSON Schema of a rule file (for editors such as VS Code)."""
    click.echo(json.dumps(rule_file_schema(), indent=2))


def run() -> None:
    try:
        main()
    except OmiRulesError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
