"""Shared fixtures: every test gets its own empty database and no model defaults. Tests using `settings`
(or `store`, `model_settings`, …) run on each backend: a SQLite file in a temp dir, and PostgreSQL
(tests/pg_helpers.py). `@pytest.mark.sqlite_only(reason)` keeps a test about SQLite itself to SQLite, and
`@pytest.mark.above_storage(reason)` one whose subject sits above storage (HTTP checks, imports), which a
second backend would only run again."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Tests live in one folder per layer (tests/mcp, tests/runs, ...) and some share constants and helpers by
# module name across folders (the e2e servers' setup, the MCP handshake bodies): every folder is importable
# whatever order pytest collects them in.
for _folder in sorted(p for p in Path(__file__).parent.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("PYTHON_DOTENV_DISABLED", "1")

# Fixtures `fake_provider` (a fake OpenAI-compatible server on 127.0.0.1, tests/fake_provider.py),
# `model_settings`, `mode`, `connect` (in-memory MCP clients, tests/runtime_helpers.py), `small_disk` (a
# real full filesystem, tests/full_disk_helpers.py) and `oauth_issuer` (a real local OAuth issuer with its
# own keys, tests/oauth_issuer.py), `hybrid` and `quick_indexer` (tests/hybrid_helpers.py).
pytest_plugins = ["fake_provider", "runtime_helpers", "full_disk_helpers", "oauth_issuer", "hybrid_helpers"]

from pg_helpers import REQUIRED, TestDatabase, base_dsn  # noqa: E402

from mcp_server_conversations.config import Settings, is_database_url  # noqa: E402
from mcp_server_conversations.storage import Store, open_store  # noqa: E402

BACKENDS = ["sqlite", "postgres"]
_pg: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): the test is about the SQLite backend itself")
    config.addinivalue_line("markers", "above_storage(reason): what the test checks does not involve storage")
    config.addinivalue_line("markers", "slow: starts processes (servers, node); scheduled first")
    config.addinivalue_line(
        "markers",
        "processes: the multi-process tier (replicas, killed processes, long checks of spawned servers, "
        "Letta Code and the TypeScript SDK); left out of a plain `pytest` run, run with `-m processes`",
    )


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two workers per core for `-n auto`: most tests spend their time waiting on servers, databases and
    child processes, so one per core leaves the cores idle about half the time."""
    return min(2 * (os.cpu_count() or 1), 8)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked sqlite_only or above_storage run on SQLite only (their postgres instance is deselected).
    A plain run (no `-m`, no paths named) leaves out the `processes` tier: it takes as long as the rest of
    the suite together, and `pytest -m processes` (CI runs both) or naming its files runs it."""
    plain = not config.option.markexpr and config.args == [str(a) for a in config.getini("testpaths")]
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("backend") == "postgres"
        one = item.get_closest_marker("sqlite_only") or item.get_closest_marker("above_storage")
        tier = plain and item.get_closest_marker("processes") is not None
        (drop if (on_pg and one) or tier else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # The long tests first: parallel workers (pyproject's -n) then share out the short ones and finish
    # together, instead of one starting a long test while the other has nothing left.
    items[:] = sorted(keep, key=lambda item: item.get_closest_marker("slow") is None)


def _pg_database() -> TestDatabase:
    """The session's PostgreSQL database, made on first use; skip (or fail when required) without one."""
    if "db" not in _pg:
        dsn, why = base_dsn()
        if dsn is None:
            _pg["why"] = why
        else:
            db = TestDatabase(dsn)
            try:
                db.create()
            except Exception as e:  # noqa: BLE001
                _pg["why"] = f"cannot create a test database on {dsn}: {e}"
            else:
                _pg["db"] = db
        _pg.setdefault("db", None)
    db = _pg["db"]
    if db is None:
        if REQUIRED:
            pytest.fail(f"PostgreSQL required (CONVERSATIONS_TEST_PG_REQUIRED=1): {_pg['why']}")
        pytest.skip(f"postgres: {_pg['why']}")
    assert isinstance(db, TestDatabase)
    return db


def pytest_sessionfinish(session: pytest.Session) -> None:
    db = _pg.get("db")
    if isinstance(db, TestDatabase):
        db.drop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pg_database(backend: str) -> TestDatabase | None:
    """The PostgreSQL test database, emptied for this test (None on SQLite)."""
    if backend != "postgres":
        return None
    db = _pg_database()
    db.empty()
    return db


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for key in list(os.environ):
        if key.startswith("CONVERSATIONS_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CONVERSATIONS_DB", str(tmp_path / "env-default.db"))


@pytest.fixture
def settings(tmp_path, pg_database: TestDatabase | None) -> Settings:
    return Settings(db=pg_database.url if pg_database else tmp_path / "conversations.db")


def on_postgres(settings: Settings) -> bool:
    return is_database_url(settings.db)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = await open_store(settings.resolved_db())
    try:
        yield s
    finally:
        await s.close()
