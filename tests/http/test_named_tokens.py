"""Named tokens end to end: the `tokens` command through the installed console script (the token
alone on stdout, once; `list` never shows one; exit 1 for an existing or unknown name), and servers
on SQLite and PostgreSQL that accept a token created after they started and refuse it at once
after a revoke."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from http_helpers import CONSOLE_SCRIPT, console_env
from pg_helpers import TestDatabase


@pytest.fixture
def db(tmp_path: Path, pg_database: TestDatabase | None) -> str:
    return pg_database.url if pg_database else str(tmp_path / "tokens.db")


def tokens(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSOLE_SCRIPT, "tokens", *args], capture_output=True, text=True, timeout=60, env=env or console_env()
    )


def create(db: str, name: str) -> str:
    done = tokens("--db", db, "create", name)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and done.stdout == lines[0] + "\n"
    assert lines[0].startswith("mcsc_") and len(lines[0]) > 40
    return lines[0]


def test_create_list_revoke_through_the_console_script(db: str) -> None:
    alice = create(db, "alice")
    bob = create(db, "bob")
    assert alice != bob
    again = tokens("--db", db, "create", "alice")
    assert again.returncode == 1 and again.stdout == "" and "alice" in again.stderr

    listed = tokens("--db", db, "list")
    assert listed.returncode == 0, listed.stderr
    assert "alice" in listed.stdout and "bob" in listed.stdout and "never" in listed.stdout
    for secret in (alice, bob, alice[5:], alice[-12:]):
        assert secret not in listed.stdout + listed.stderr

    gone = tokens("revoke", "bob", "--db", db)  # --db after the subcommand too
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout == ""
    assert "bob" not in tokens("--db", db, "list").stdout
    assert "bob" in tokens("--db", db, "list", "--all").stdout
    unknown = tokens("--db", db, "revoke", "bob")
    assert unknown.returncode == 1 and "bob" in unknown.stderr
    assert tokens("--db", db, "revoke", "nobody").returncode == 1
    create(db, "bob")  # a revoked name can be given again


def test_the_database_comes_from_conversations_db(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    env = console_env(CONVERSATIONS_DB=str(path))
    done = tokens("create", "erin", env=env)
    assert done.returncode == 0, done.stderr
    assert path.exists()
    assert "erin" in tokens("list", env=env).stdout


@pytest.mark.sqlite_only("argument checks, before any database")
def test_bad_names_and_arguments_get_a_clear_error(db: str) -> None:
    for bad in ("", "a b", "../x", "x" * 65):
        done = tokens("--db", db, "create", bad)
        assert done.returncode == 2 and done.stdout == ""
        assert "invalid token name" in done.stderr and "letters, digits" in done.stderr
    assert tokens("--db", db).returncode == 2
    assert tokens("--db", db, "frobnicate").returncode == 2
    unreachable = tokens("--db", "postgresql://nobody@127.0.0.1:1/x", "list")
    assert unreachable.returncode == 1 and "cannot open" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
