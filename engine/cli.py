"""The `omi-rules` command: each subcommand is a thin layer over one engine function."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import click
import msgspec

from engine import samples
from engine.backtest import backtest_captured
from engine.bench import run_bench
from engine.config import ConfigError, load_settings
from engine.dryrun import dry_run_events, dry_run_files
from engine.durations import parse_duration
from engine.errors import OmiRulesError, PayloadError
from engine.init_folder import init_folder, next_steps
from engine.report_text import format_history_event, format_report
from engine.rule_tests import run_rule_tests
from engine.rules.compiled import RuleSet
from engine.rules.loader import load_rules
from engine.rules.schema import rule_file_schema
from engine.rules.user_setup import setup_instructions
from engine.secrets import ENV_PREFIX, SecretRedactor, Secrets
from engine.server import history as history_queries
from engine.server import retention, store_postgres
from engine.server.access import TOKEN_FILE, admin_token
from engine.server.retention import DAY
from engine.server.statuses import ActionStatus
from engine.server.store import Store
from engine.soak import run_soak
from engine.triggers import default_triggers

PROGRESS_THRESHOLD = 20  # events; fewer replay without a progress bar

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


DB_HELP = "SQLite file or postgresql:// URL (default from config: data/omi-rules.db)."


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
    for warning in ruleset.warnings:
        click.echo(f"warning: {warning}", err=True)
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
@click.option(
    "--trigger",
    type=click.Choice(default_triggers().names()),
    help="Which webhook the payloads are.",
)
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
@click.option("--captured", is_flag=True, help="Replay events stored by the server instead.")
@click.option("--since", default=None, help="With --captured: from a time (ISO) or ago (2h).")
@click.option("--limit", default=None, type=int, help="With --captured: at most this many.")
@click.option("--db", default=None, help="With --captured: the SQLite file or postgresql:// URL.")
def dry_run(
    trigger: str | None,
    payloads: tuple[str, ...],
    rules_dir: str,
    secrets_file: str | None,
    uid: str,
    session: str,
    sample_rate: int,
    as_json: bool,
    captured: bool,
    since: str | None,
    limit: int | None,
    db: str | None,
) -> None:
    """Show what the rules would do with payloads (or captured events); nothing is sent."""
    if not captured and (not trigger or not payloads):
        raise click.UsageError("give --trigger and at least one --payload, or --captured")
    ruleset = load_rules(rules_dir)
    report_rule_errors(ruleset)
    secrets = Secrets.load(secrets_file)
    if captured:
        replay_captured(ruleset, secrets, db=db, since=since, limit=limit, as_json=as_json)
        return
    if trigger is None:
        raise click.UsageError("give --trigger")
    reports = dry_run_files(
        trigger,
        list(payloads),
        uid=uid,
        session=session,
        sample_rate=sample_rate,
        secrets=secrets,
        rules=ruleset,
        allow_hosts=load_settings().outbound_allow_hosts,
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
@click.argument("folder", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def init(folder: str, force: bool) -> None:
    """Write a working folder: example rules, config, secrets file, samples, data/."""
    click.echo(next_steps(init_folder(folder, force=force)))


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Config file (YAML; default: omi-rules.yaml in this folder, when there is one); "
    "OMI_RULES_<NAME> variables override it.",
)
@click.option("--rules", "rules_dir", default=None, help="Folder of rule files.")
@click.option(
    "--db",
    default=None,
    help="SQLite file for events and the outbox, or a postgresql:// URL (Scaling out).",
)
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
@secrets_option
def serve(
    config_file: str | None,
    rules_dir: str | None,
    db: str | None,
    host: str | None,
    port: int | None,
    secrets_file: str | None,
) -> None:
    """Receive Omi's webhooks and run the rules."""
    import uvicorn

    from engine.server.app import create_app

    settings = load_settings(
        config_file, rules=rules_dir, db=db, host=host, port=port, secrets=secrets_file
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    token, created = admin_token(settings)
    app = create_app(settings, freeze_heap=True)
    receiver = app.state.receiver
    try:  # a clear line, not the traceback of a failed startup
        receiver.check_keys()
    except ConfigError as exc:
        receiver.store.close()
        raise click.ClickException(str(exc)) from None
    redactor = SecretRedactor(lambda: receiver.secrets)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    click.echo(
        f"omi-rules: rules from {settings.rules}/, events in {receiver.store.path}; "
        f"listening on http://{settings.host}:{settings.port}",
        err=True,
    )
    if created:  # shown once; after this it is only in the file
        click.echo(
            f"omi-rules: admin token for the editor at /ui, /api and /schema (kept in "
            f"{Path(settings.data_dir) / TOKEN_FILE}): {token}",
            err=True,
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=None,  # uvicorn's records go through the handlers above (redacted)
        access_log=False,
    )


@main.command()
@click.option(
    "--db",
    default=None,
    help="SQLite file or postgresql:// URL (default from config: data/omi-rules.db).",
)
@click.option("--limit", default=20, show_default=True)
@click.option("--trigger", type=click.Choice(default_triggers().names()), default=None)
@click.option("--json", "as_json", is_flag=True, help="Events as JSON lines, with their actions.")
@click.option("--dead", is_flag=True, help="List dead letters instead of events.")
def history(db: str | None, limit: int, trigger: str | None, as_json: bool, dead: bool) -> None:
    """What happened to recent events: rules matched or why not, each action's fate."""
    store = open_store(db)
    try:
        if dead:
            rows = history_queries.list_actions(store, status=ActionStatus.DEAD, limit=limit)
            for row in rows:
                click.echo(
                    msgspec.json.encode(row).decode()
                    if as_json
                    else f"#{row['id']} {row['rule_id']} {row['connector']} after "
                    f"{row['attempts']} attempt(s): {row['last_error']}"
                )
            return
        events = history_queries.list_events(store, limit=limit, trigger=trigger)
        for event in reversed(events):
            detail = history_queries.event_detail(store, event["id"])
            if detail is None:  # pruned between the list and this read
                continue
            if as_json:
                click.echo(msgspec.json.encode(detail).decode())
            else:
                click.echo(format_history_event(detail))
    finally:
        store.close()


@main.command()
@click.option(
    "--db",
    default=None,
    help="SQLite file or postgresql:// URL (default from config: data/omi-rules.db).",
)
@click.option(
    "--older-than",
    default=None,
    help="A duration (30d, 12h); default: the retention_days setting.",
)
def prune(db: str | None, older_than: str | None) -> None:
    """Delete events, their actions and rejections older than the retention period."""
    settings = load_settings(db=db)
    try:
        days = parse_duration(older_than) / DAY if older_than else settings.retention_days
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    store = open_store(db)
    try:
        pruned = retention.prune(store, older_than_days=days, now=time.time())
    finally:
        store.close()
    click.echo(f"deleted {pruned} older than {days:g} day(s)")


@main.command()
@click.option("--soak", is_flag=True, help="Mixed traffic at half the measured capacity.")
@click.option("--seconds", default=60.0, show_default=True, help="How long the soak runs.")
@click.option(
    "--max-growth-mb",
    default=20.0,
    show_default=True,
    help="Server memory growth allowed over the soak's last half.",
)
@click.option("--quick", is_flag=True, help="Small rule counts and 1 s loads (the tests' form).")
@click.option(
    "--postgres",
    default=None,
    metavar="URL",
    help="PostgreSQL server for the scale-out section (a URL that may create databases; "
    "bench creates and drops its own). Default: a throwaway server, when installed.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def bench(
    soak: bool,
    seconds: float,
    max_growth_mb: float,
    quick: bool,
    postgres: str | None,
    as_json: bool,
) -> None:
    """Matching time, naive ratio, receiver vs bare Litestar, scale-out (SQLite, PostgreSQL,
    two receivers), decision bytes, peak memory (targets printed PASS/FAIL, exit 0); with
    --soak, the soak (exit 1 on a problem)."""
    if not soak:
        bench_report = run_bench(
            quick, postgres=postgres, progress=lambda line: click.echo(line, err=True)
        )
        if as_json:
            click.echo(json.dumps(bench_report.json_dict(), indent=2))
        else:
            click.echo(bench_report.text())
        return
    report = run_soak(seconds, progress=lambda line: click.echo(line, err=True))
    for line in report.lines():
        click.echo(line)
    problems = report.problems(max_growth_mb)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        sys.exit(1)


@main.command()
def schema() -> None:
    """Print the JSON Schema of a rule file (for editors such as VS Code)."""
    click.echo(json.dumps(rule_file_schema(), indent=2))


@main.command()
@click.argument("trigger", required=False)
@click.option("--name", default=None, help="Another sample, e.g. memory-personal-discarded.")
@click.option("--list", "as_list", is_flag=True, help="List the samples and their triggers.")
def example(trigger: str | None, name: str | None, as_list: bool) -> None:
    """Print a sample payload for TRIGGER (memory, transcript, audio, day-summary)."""
    try:
        wanted = samples.trigger_name(trigger) if trigger else None
        if as_list:
            for sample, sample_trigger in samples.SAMPLES.items():
                if wanted in (None, sample_trigger):
                    click.echo(f"{sample_trigger:<12} {sample}")
            return
        chosen = samples.pick(wanted, name)
    except KeyError as exc:
        raise click.UsageError(exc.args[0]) from None
    if samples.is_binary(chosen) and sys.stdout.isatty():
        raise click.ClickException(
            f"{chosen} is raw PCM16 audio; redirect it: omi-rules example audio > speech.pcm"
        )
    sys.stdout.flush()
    sys.stdout.buffer.write(samples.sample_bytes(chosen))
    sys.stdout.buffer.flush()


@main.command("setup-instructions")
@rules_option
@click.option(
    "--url",
    "base_url",
    default="https://your.host",
    show_default=True,
    help="Where Omi reaches this server (https, see Exposing the server).",
)
def setup_instructions_command(rules_dir: str, base_url: str) -> None:
    """Print the fields of Omi's app submission form for these rules: Webhook URL, Setup
    Completed URL, Auth URL and Setup Instructions (from the rules' `settings:`)."""
    ruleset = load_rules(rules_dir)
    report_rule_errors(ruleset)
    click.echo(setup_instructions(ruleset, base_url), nl=False)


@main.command("test")
@rules_option
@click.option(
    "--db",
    default=None,
    help="SQLite file or postgresql:// URL, for cases that name a captured event.",
)
def test_rules(rules_dir: str, db: str | None) -> None:
    """Run the rule tests (rules/*.test.yaml): one line per case, exit 1 on a failure,
    2 on a broken test file."""
    store = open_store(db) if db else None
    try:
        run = run_rule_tests(rules_dir, store=store)
    finally:
        if store is not None:
            store.close()
    for result in run.results:
        click.echo(f"{result.nodeid} {'PASSED' if result.passed else 'FAILED'}")
    failures = [result for result in run.results if not result.passed]
    if failures:
        click.echo("\n=== failures ===")
    for result in failures:
        click.echo(f"\n{result.file}:{result.line}: {result.name} (rule {result.rule_id})")
        for line in result.message.splitlines():
            click.echo(f"    {line}")
    for error in run.errors:
        click.echo(f"error: {error}", err=True)
    click.echo(run.summary())
    sys.exit(run.exit_code)


@main.command("backtest")
@rules_option
@click.option(
    "--against",
    "against_dir",
    default=None,
    type=click.Path(file_okay=False, exists=True),
    help="Compare with the rules of this folder (default: --saved).",
)
@click.option(
    "--saved",
    is_flag=True,
    help="Compare with what the server recorded when each event arrived (the default).",
)
@click.option("--since", default=None, help="Only events from a time (ISO) or ago (7d).")
@click.option("--limit", default=500, show_default=True, help="The last this many events.")
@click.option(
    "--db",
    default=None,
    help="SQLite file or postgresql:// URL (default from config: data/omi-rules.db).",
)
@secrets_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backtest_rules(
    rules_dir: str,
    against_dir: str | None,
    saved: bool,
    since: str | None,
    limit: int,
    db: str | None,
    secrets_file: str | None,
    as_json: bool,
) -> None:
    """Over the last captured events: which events the rules in --rules decide differently
    from --against DIR or from what was recorded (--saved)."""
    if against_dir and saved:
        raise click.UsageError("give --against DIR or --saved, not both")
    after = load_rules(rules_dir)
    report_rule_errors(after)
    before = load_rules(against_dir) if against_dir else None
    if before is not None:
        report_rule_errors(before)
    settings = load_settings(db=db)
    store = open_store(db)
    try:
        report = backtest_captured(
            store,
            after,
            before=before,
            secrets=Secrets.load(secrets_file),
            since=parse_since(since),
            limit=limit,
            data_dir=settings.data_dir,
            allow_hosts=settings.outbound_allow_hosts,
            progress=show_progress("backtested"),
        )
    finally:
        store.close()
    if as_json:
        click.echo(msgspec.json.encode(report).decode())
    else:
        label = f"the rules in {against_dir}" if against_dir else "the saved version"
        click.echo(report.text(label))


def show_progress(label: str, every: int = 100) -> Callable[[int, int], None]:
    """A progress(done, total) that writes `label done/total` on stderr now and then."""

    def progress(done: int, total: int) -> None:
        if total > PROGRESS_THRESHOLD and (done % every == 0 or done == total):
            click.echo(f"{label} {done}/{total} event(s)", err=True)

    return progress


def open_store(db: str | None) -> Store:
    settings = load_settings(db=db)
    # a PostgreSQL URL names no file: the store connects (and says so when it cannot)
    shared = store_postgres.is_url(settings.db)
    if settings.db != ":memory:" and not shared and not Path(settings.db).exists():
        raise click.ClickException(f"no database at {settings.db} (has the server run?)")
    return Store(settings.db)


def parse_since(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither a duration (2h) nor an ISO time", param_hint="--since"
        ) from None


def replay_captured(
    ruleset: RuleSet,
    secrets: Secrets,
    *,
    db: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    store = open_store(db)
    start = parse_since(since)
    try:
        total = history_queries.count_captured(store, since=start)
        total = min(total, limit) if limit is not None else total
        events = list(history_queries.captured_events(store, since=start, limit=limit))
        reports = dry_run_events(
            events, ruleset, secrets, allow_hosts=load_settings(db=db).outbound_allow_hosts
        )
        # on stderr; hidden when the report itself scrolls by on the same terminal
        show_bar = total > PROGRESS_THRESHOLD and (as_json or not sys.stdout.isatty())
        with click.progressbar(
            length=total, label="replaying", file=sys.stderr, hidden=not show_bar
        ) as bar:
            for event, report in zip(events, reports, strict=True):
                if as_json:
                    click.echo(msgspec.json.encode(report).decode())
                else:
                    click.echo(format_report(report, f"{event.id} uid {event.uid}"))
                bar.update(1)
        click.echo(f"replayed {total} captured event(s); nothing was sent", err=True)
    finally:
        store.close()


def run() -> None:
    try:
        main()
    except OmiRulesError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
