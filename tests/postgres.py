"""The test session's PostgreSQL: engine.pg_server's throwaway server (initdb + pg_ctl from
Debian's `postgresql`, loopback, durability off; its folder is outside pytest's basetemp, which
the canary scan reads), and when a test without it fails rather than skips."""

from __future__ import annotations

from collections.abc import Mapping

from engine.pg_server import (
    INSTALL_HINT,
    PostgresServer,
    PostgresUnavailable,
    find_pg_bin,
)

__all__ = [
    "INSTALL_HINT",
    "PostgresServer",
    "PostgresUnavailable",
    "find_pg_bin",
    "must_fail_without_postgres",
]


def must_fail_without_postgres(environ: Mapping[str, str], euid: int) -> bool:
    """Without PostgreSQL, a test that needs it fails (rather than skips) in CI and as root:
    CI runs as root and installs the package, so its absence there is a broken build."""
    return bool(environ.get("CI")) or euid == 0
