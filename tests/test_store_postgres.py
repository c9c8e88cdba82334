"""The PostgreSQL backend's own pieces: SQLite's parameter marks in psycopg's form, a URL
shown without its password, keepalives on every connection; and SQL that differs."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from engine.server.outbox import counts_by_status, purge_dead
from engine.server.store import Store
from engine.server.store_postgres import shown_url, translate, with_keepalives


def test_marks_are_translated_and_literals_and_percents_kept() -> None:
    assert translate("SELECT * FROM t WHERE a = ? AND b = :name") == (
        "SELECT * FROM t WHERE a = %s AND b = %(name)s"
    )
    # a ? or :word inside a literal, a ::cast and a % are not marks
    assert translate("SELECT 'a?b :c 5%', x::text, y % 2 FROM t WHERE z = ?") == (
        "SELECT 'a?b :c 5%%', x::text, y %% 2 FROM t WHERE z = %s"
    )


def test_a_password_is_never_shown() -> None:
    assert shown_url("postgresql://omi:hunter2@db:5432/omi") == "postgresql://omi:***@db:5432/omi"
    shown = shown_url("postgresql://db/omi?sslmode=require&password=hunter2&x=1")
    assert "hunter2" not in shown and shown.endswith("password=***&x=1")


def test_connections_get_keepalives_unless_the_url_sets_them() -> None:
    params = conninfo_to_dict(with_keepalives("postgresql://u@h/d?keepalives_idle=5"))
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "5"
    assert params["dbname"] == "d" and params["host"] == "h"


def test_empty_id_lists_are_no_sql_error(store: Store) -> None:
    """SQL has no empty IN (): SQLite took one, PostgreSQL refuses it (a 500 for
    POST /api/dead-letters/purge with no ids)."""
    assert purge_dead(store, []).result(timeout=10) == 0
    assert counts_by_status(store, []) == {}
