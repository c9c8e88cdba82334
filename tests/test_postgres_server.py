"""The test suite's PostgreSQL (tests/postgres.py and the conftest fixtures): a real server
on loopback, one empty database per test."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.postgres import (
    INSTALL_HINT,
    PostgresServer,
    PostgresUnavailable,
    find_pg_bin,
    must_fail_without_postgres,
)


def _public_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return [row[0] for row in rows]


def test_url_connects_to_postgresql_on_loopback(postgres_url: str) -> None:
    parts = conninfo_to_dict(postgres_url)
    assert parts["host"] == "127.0.0.1"
    assert str(parts["dbname"]).startswith("t_")
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT version(), current_database()").fetchone()
        assert conn.info.host == "127.0.0.1"
    assert row is not None
    version, database = row
    assert version.startswith("PostgreSQL ")
    assert database == parts["dbname"]


def test_server_url_is_the_postgres_database(postgres_server: PostgresServer) -> None:
    password = postgres_server.password
    assert postgres_server.url == (
        f"postgresql://postgres:{password}@127.0.0.1:{postgres_server.port}/postgres"
    )
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row == ("postgres", "postgres")
    # the password is asked for (no trust): another local user cannot just connect
    without = postgres_server.url.replace(f":{password}@", "@")
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without, connect_timeout=5)


def test_databases_are_separate_and_empty(
    postgres_url: str, postgres_server: PostgresServer
) -> None:
    other = postgres_server.new_database(f"{conninfo_to_dict(postgres_url)['dbname']}_other")
    assert other != postgres_url
    assert _public_tables(postgres_url) == []
    assert _public_tables(other) == []
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE made_here (id integer PRIMARY KEY)")
    assert _public_tables(postgres_url) == ["made_here"]
    assert _public_tables(other) == []


def test_duplicate_primary_key_raises_unique_violation(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id integer PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items VALUES (1, 'first')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO items VALUES (1, 'again')")
        count = conn.execute("SELECT count(*) FROM items").fetchone()
    assert count == (1,)


def test_new_database_refuses_names_that_are_not_plain(
    postgres_server: PostgresServer,
) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        postgres_server.new_database('x"; DROP DATABASE postgres; --')


def _executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def test_find_pg_bin_picks_the_newest_version_by_number(tmp_path: Path) -> None:
    root = tmp_path / "postgresql"
    for version in ("9.6", "15", "16"):
        _executable(root / version / "bin" / "initdb")
        _executable(root / version / "bin" / "pg_ctl")
    _executable(root / "17" / "bin" / "pg_ctl")  # a half-installed version: no initdb
    empty_path = str(tmp_path / "nothing-here")
    assert find_pg_bin(path=empty_path, lib_root=root) == root / "16" / "bin"


def test_find_pg_bin_prefers_path(tmp_path: Path) -> None:
    on_path = tmp_path / "on-path"
    _executable(on_path / "initdb")
    _executable(on_path / "pg_ctl")
    root = tmp_path / "postgresql"
    _executable(root / "16" / "bin" / "initdb")
    _executable(root / "16" / "bin" / "pg_ctl")
    assert find_pg_bin(path=str(on_path), lib_root=root) == on_path


def test_without_postgresql_the_error_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(PostgresUnavailable) as raised:
        find_pg_bin(path=str(tmp_path), lib_root=tmp_path / "postgresql")
    assert str(raised.value) == INSTALL_HINT
    assert "apt-get install postgresql" in str(raised.value)


@pytest.mark.parametrize(
    ("environ", "euid", "fails"),
    [
        ({}, 1000, False),
        ({"CI": "1"}, 1000, True),
        ({"CI": ""}, 1000, False),
        ({}, 0, True),
    ],
)
def test_missing_postgresql_fails_in_ci_and_as_root(
    environ: dict[str, str], euid: int, fails: bool
) -> None:
    assert must_fail_without_postgres(environ, euid) is fails


def test_stop_removes_the_folder_and_the_server(postgres_server: PostgresServer) -> None:
    # a second server of its own (the fixture's server says whether PostgreSQL is installed)
    server = PostgresServer.start(postgres_server.bin_dir)
    folder = server.folder
    assert (folder / "data" / "PG_VERSION").exists()
    url = server.new_database("stop_check")
    server.stop()
    assert not folder.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
