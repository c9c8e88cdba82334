"""Dry-run reports as text a person reads in a terminal."""

from __future__ import annotations

import json
import time
from typing import Any

from engine.dryrun import EventReport

INDENT = "      "


def _request_lines(request: Any) -> list[str]:
    if isinstance(request, dict) and "method" in request and "url" in request:
        lines = [f"{request['method']} {request['url']}"]
        for name, value in (request.get("headers") or {}).items():
            lines.append(f"{name}: {value}")
        for key in ("query", "json", "form", "body"):
            if key in request:
                text = json.dumps(request[key], indent=2, ensure_ascii=False)
                lines.extend((text if key == "json" else f"{key}: {text}").splitlines())
        return lines
    if isinstance(request, dict) and "message" in request and "rcpt_to" in request:
        head = f"SMTP {request['host']}:{request['port']} ({request['security']})"
        envelope = f"MAIL FROM {request['mail_from']} RCPT TO {', '.join(request['rcpt_to'])}"
        return [head, envelope, "", *request["message"].rstrip("\n").splitlines()]
    return json.dumps(request, indent=2, ensure_ascii=False).splitlines()


def format_report(report: EventReport, label: str) -> str:
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
            request_lines = _request_lines(action.request)
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
