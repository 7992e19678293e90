"""Shared fixtures: every test gets its own SQLite file in a temp dir and no model defaults."""

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

# Fixtures `fake_provider` (a fake OpenAI-compatible server on 127.0.0.1, tests/fake_provider.py) and
# `model_settings`, `mode`, `connect` (in-memory MCP clients, tests/runtime_helpers.py), `small_disk` (a
# real full filesystem, tests/full_disk_helpers.py).
pytest_plugins = ["fake_provider", "runtime_helpers", "full_disk_helpers"]

from mcp_server_conversations.config import Settings  # noqa: E402
from mcp_server_conversations.storage import SQLiteStore  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for key in list(os.environ):
        if key.startswith("CONVERSATIONS_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CONVERSATIONS_DB", str(tmp_path / "env-default.db"))


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(db=tmp_path / "conversations.db")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(settings.resolved_db())
    try:
        yield s
    finally:
        await s.close()
