"""engine.server.why_not: history stores the decisions it cannot compute again and computes
the others when asked, from the event and the rule version it was decided with. The trace
reads exactly as when every decision was stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from engine.dryrun import dry_run_files
from engine.rules.loader import load_rules
from engine.secrets import Secrets
from engine.server.app import create_app
from tests.conftest import fixture_path
from tests.server_helpers import admin_client, server_settings, write_rules
from tests.wait import wait_until


def many_rules(count: int) -> str:
    """`count` rules that do not fire on memory-work.json, of several kinds, and one that does."""
    kinds = [
        "  when: [{{path: $.structured.category, equals: sport{n}}}]",
        "  when: [{{keywords: ['quarterly numbers {n}']}}]",
        "  uids: [someone-{n}]",
        "  enabled: false",
        "  when: [{{path: $.structured.title, matches: '^Budget {n}'}}]",
    ]
    rules = [
        f"- id: r{n}\n  trigger: memory\n{kinds[n % len(kinds)].format(n=n)}\n"
        f"  do: [{{log: {{message: x}}}}]\n"
        for n in range(count)
    ]
    rules.append("- id: fires\n  trigger: memory\n  do: [{log: {message: yes}}]\n")
    rules.append(
        "- id: needs-secret\n  trigger: memory\n"
        "  do: [{slack: {webhook_url: '{{ secrets.NOT_SET_HERE }}', text: x}}]\n"
    )
    return "".join(rules)


def post(client: Any, trigger: str, name: str, query: str = "uid=user123") -> str:
    answer = client.post(
        f"/webhook/{trigger}?{query}",
        content=fixture_path(name).read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    return str(client.get("/api/events?limit=1").json()[0]["id"])


def stored_decisions(client: Any, event_id: str) -> list[dict[str, Any]]:
    store = client.app.state.receiver.store
    rows = store.query("SELECT decisions FROM events WHERE id = ?", (event_id,))
    return list(msgspec.json.decode(rows[0]["decisions"]))


def reference(rules_dir: Path, trigger: str, payloads: list[str]) -> list[tuple[str, bool, str]]:
    """What deciding every rule gives (a dry-run with the server's secrets: none)."""
    rules = load_rules(rules_dir)
    *_, last = dry_run_files(
        trigger,
        [str(fixture_path(name)) for name in payloads],
        rules=rules,
        secrets=Secrets(),
        session="s1",
    )
    decided = [(m.rule, True, "") for m in last.matched]
    decided += [(s.rule, False, s.reason) for s in last.skipped]
    return sorted(decided)


def shown(detail: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return sorted(
        (d["rule"], d["matched"], d["reason"] if not d["matched"] else "")
        for d in detail["decisions"]
    )


def test_only_what_cannot_be_recomputed_is_stored(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), many_rules(40), "many.yaml")
    with admin_client(create_app(settings)) as client:
        event_id = post(client, "memory", "memory-work.json")
        # the rule skipped for an unset secret is explained from the rule version
        assert [d["rule"] for d in stored_decisions(client, event_id)] == ["fires"]
        detail = client.get(f"/api/events/{event_id}").json()
    assert len(detail["decisions"]) == 42
    expected = reference(Path(settings.rules), "memory", ["memory-work.json"])
    # a dry-run renders with placeholders; serving skipped the rule, and so does the replay
    expected.remove(("needs-secret", True, ""))
    expected.append(("needs-secret", False, "secrets not set: NOT_SET_HERE"))
    assert shown(detail) == sorted(expected)


def test_stored_bytes_do_not_grow_with_the_rule_count(tmp_path: Path) -> None:
    sizes = []
    for count in (10, 1000):
        (tmp_path / str(count)).mkdir()
        settings = server_settings(tmp_path / str(count))
        write_rules(Path(settings.rules), many_rules(count), "many.yaml")
        with admin_client(create_app(settings)) as client:
            event_id = post(client, "memory", "memory-work.json")
            sizes.append(len(msgspec.json.encode(stored_decisions(client, event_id))))
    assert sizes[0] == sizes[1]


def test_a_transcript_call_is_explained_by_replaying_its_session(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    write_rules(
        Path(settings.rules),
        """
        - id: lights
          trigger: transcript
          when: [{keywords: ["turn on the lights"]}]
          do: [{log: {message: lights}}]
        - id: never
          trigger: transcript
          when: [{keywords: ["unheard of phrase"]}]
          do: [{log: {message: never}}]
        - id: user-only
          trigger: transcript
          when: [{keywords: ["lights"], speaker: user}]
          do: [{log: {message: user}}]
        """,
    )
    calls = [f"transcript-call-{n}.json" for n in (1, 2, 3)]
    with admin_client(create_app(settings)) as client:
        ids = [post(client, "transcript", name, "uid=user123&session_id=s1") for name in calls]
        ids.append(post(client, "transcript", calls[1], "uid=user123&session_id=s1"))  # again
        for n, event_id in enumerate(ids[:3]):
            detail = client.get(f"/api/events/{event_id}").json()
            expected = reference(Path(settings.rules), "transcript", calls[: n + 1])
            assert shown(detail) == expected, n
        repeat = client.get(f"/api/events/{ids[3]}").json()
    assert {d["reason"] for d in repeat["decisions"]} == {"no new segments (all were sent before)"}


CATEGORY_RULE = """
id: cat
trigger: memory
when: [{{path: $.structured.category, equals: {category}}}]
do: [{{log: {{message: x}}}}]
"""


def test_an_event_keeps_the_reasons_of_the_rules_it_was_decided_with(tmp_path: Path) -> None:
    settings = server_settings(tmp_path)
    rules = Path(settings.rules)
    write_rules(rules, CATEGORY_RULE.format(category="sport"))
    with admin_client(create_app(settings)) as client:
        before = post(client, "memory", "memory-work.json")
        write_rules(rules, CATEGORY_RULE.format(category="music"))
        client.app.state.receiver.live_rules.reload()
        after = post(client, "memory", "memory-extra-fields.json")
        old = client.get(f"/api/events/{before}").json()["decisions"]
        new = client.get(f"/api/events/{after}").json()["decisions"]
    assert "sport" in old[0]["reason"] and "music" not in old[0]["reason"]
    assert "music" in new[0]["reason"]


def test_prune_forgets_versions_no_kept_event_uses(tmp_path: Path) -> None:
    import time

    from engine.server.retention import prune

    settings = server_settings(tmp_path)
    rules = Path(settings.rules)
    write_rules(rules, "id: a\ntrigger: memory\ndo: [{log: {message: x}}]\n")
    with admin_client(create_app(settings)) as client:
        old = post(client, "memory", "memory-work.json")
        write_rules(rules, "id: b\ntrigger: memory\ndo: [{log: {message: x}}]\n")
        client.app.state.receiver.live_rules.reload()
        store = client.app.state.receiver.store
        store.submit(
            lambda db: db.execute(
                "UPDATE rule_versions SET created_at = 0 WHERE version = "
                "(SELECT rules_version FROM events WHERE id = ?)",
                [old],
            )
        ).result()
        store.submit(
            lambda db: db.execute("UPDATE events SET received_at = 0 WHERE id = ?", [old])
        ).result()
        versions = lambda: store.query("SELECT COUNT(*) AS n FROM rule_versions")[0]["n"]  # noqa: E731
        assert versions() == 2
        # an event is kept while its action may still be sent: let the log action finish
        wait_until(
            lambda: {a["status"] for a in client.get("/api/actions").json()} == {"delivered"},
            what="the old event's action to be delivered",
        )
        prune(store, older_than_days=1, now=time.time())
        assert versions() == 1  # the old event went, and its version; the serving one stays
        kept = post(client, "memory", "memory-extra-fields.json")
        assert client.get(f"/api/events/{kept}").json()["decisions"][0]["rule"] == "b"
