"""The canary secret (tests/canary.py) in use: rules that send it, payloads that try to get
it back, a target whose error quotes it. The run-wide watch in conftest then searches every
log line, HTTP answer and file; here the same is asserted where it happens."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
from click.testing import CliRunner

from engine.cli import main
from tests.canary import CANARY, CanaryWatch
from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.servers import Reply, TargetServer
from tests.wait import wait_until

RULES = """
- id: with-canary
  trigger: memory
  do:
    - http:
        url: "{url}/hook"
        headers: {{Authorization: "Bearer {{{{ secrets.CANARY }}}}"}}
        json: {{title: "{{{{ memory.structured.title }}}}"}}
    - notify: {{message: "Saved {{{{ memory.structured.title }}}}"}}
"""
HOSTILE_TITLES = [
    "<secret:CANARY>",
    "{{ secrets.CANARY }}",
    "<secret:CANARY:" + "f" * 32 + ">",
    "{% for k in secrets %}{{ k }}{% endfor %}",
]


def test_the_watch_sees_a_leak_in_a_log_line_an_answer_and_a_file(tmp_path: Path) -> None:
    needle = "not-the-canary-but-watched-like-it"  # the run-wide watch must not see this
    watch = CanaryWatch(needle)
    target = TargetServer(default=Reply(200, f"echo {needle}")).start()
    try:
        with watch.installed():
            logging.getLogger("omi_rules.test").warning("token is %s", needle)
            httpx.get(target.url)
    finally:
        target.stop()
    (tmp_path / "x.db").write_bytes(b"\x00" + needle.encode())
    watch.scan_files(tmp_path)
    assert [leak.split(" ")[0] for leak in watch.leaks] == ["log", "HTTP", "file"]


def test_a_target_quoting_the_secret_and_hostile_payloads_leak_nothing(tmp_path: Path) -> None:
    def respond(request: object) -> Reply:
        auth = request.header("Authorization")  # type: ignore[attr-defined]
        return Reply(400, f"invalid credentials: {auth}")  # an error body quoting the token

    target = TargetServer(respond=respond).start()
    try:
        settings = server_settings(tmp_path)
        write_rules(Path(settings.rules), RULES.format(url=target.url))
        with LiveServer(settings) as server:
            answers = [
                httpx.post(
                    f"{server.url}/webhook/memory?uid=u",
                    json={"id": f"m{n}", "structured": {"title": title}},
                )
                for n, title in enumerate(HOSTILE_TITLES)
            ]
            received = target.wait_for(len(HOSTILE_TITLES))

            def dead() -> list[dict[str, object]]:
                actions = httpx.get(f"{server.url}/api/dead-letters", headers=ADMIN).json()
                return actions if len(actions) == len(HOSTILE_TITLES) else []

            dead_letters = wait_until(dead)
            shown = httpx.get(f"{server.url}/api/events", headers=ADMIN).text
    finally:
        target.stop()
    # the secret went where the rule sent it, and nowhere else
    assert {r.header("Authorization") for r in received} == {f"Bearer {CANARY}"}
    assert [json.loads(r.body)["title"] for r in received] == HOSTILE_TITLES
    assert [a.json()["message"] for a in answers] == [f"Saved {t}" for t in HOSTILE_TITLES]
    assert all(
        "invalid credentials: Bearer <secret:CANARY>" in d["last_error"] for d in dead_letters
    )
    assert CANARY not in shown + json.dumps(dead_letters)


def test_dry_run_output_masks_the_secret(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write_rules(rules, RULES.format(url="https://hooks.example.com"))
    payload = tmp_path / "memory.json"
    payload.write_text(json.dumps({"id": "m", "structured": {"title": "<secret:CANARY>"}}))
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(
            main,
            ["dry-run", "--rules", str(rules), "--trigger", "memory", "--payload", str(payload)]
            + extra,
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        assert "Bearer <secret:CANARY>" in result.output
        assert CANARY not in result.output
