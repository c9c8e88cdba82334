"""Dry-run reports as text a person reads in a terminal."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from engine.connector import Registry, default_registry, describe_of
from engine.dryrun import EventReport

INDENT = "      "


def _request_lines(registry: Registry, connector: str, request: Any) -> list[str]:
    """The connector's own description of the (masked) request, or the request as JSON when
    the connector is not installed or the request no longer fits its type."""
    if connector in registry:
        installed = registry[connector]
        try:
            return describe_of(installed, msgspec.convert(request, installed.Request)).splitlines()
        except msgspec.ValidationError:
            pass
    return json.dumps(request, indent=2, ensure_ascii=False).splitlines()


def format_report(report: EventReport, label: str, registry: Registry | None = None) -> str:
    registry = registry if registry is not None else default_registry()
    lines = [
        f"{label} ({report.trigger}): {len(report.matched)} matched, {len(report.skipped)} skipped"
    ]
    for matched in report.matched:
        note = f" ({matched.note})" if matched.note else ""
        lines.append(f"  ✔ {matched.rule}: {len(matched.actions)} action(s){note}")
        for action in matched.actions:
            if action.error:
                lines.append(f"    ✘ {action.connector}: {action.error}")
                continue
            request_lines = _request_lines(registry, action.connector, action.request)
            lines.append(f"    → {action.connector}: {request_lines[0]}")
            lines.extend(INDENT + line for line in request_lines[1:])
    for skipped in report.skipped:
        lines.append(f"  · {skipped.rule}: {skipped.reason}")
    return "\n".join(lines)


def format_history_event(event: dict[str, Any]) -> str:
    """One stored event: what each rule decided and what became of each action."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["received_at"]))
    lines = [f"{when} {event['trigger']} uid {event['uid']} [{event['status']}] {event['id']}"]
    for decision in event["decisions"]:
        mark = "✔" if decision["matched"] else "·"
        reason = f": {decision['reason']}" if decision["reason"] else ""
        lines.append(f"  {mark} {decision['rule']}{reason}")
    for action in event["actions"]:
        status = action["status"]
        detail = f" HTTP {action['last_status']}" if action.get("last_status") else ""
        error = f": {action['last_error']}" if action.get("last_error") else ""
        lines.append(
            f"    #{action['id']} {action['rule_id']} → {action['connector']} "
            f"{status} after {action['attempts']} attempt(s){detail}{error}"
        )
    return "\n".join(lines)
