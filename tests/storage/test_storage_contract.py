"""The Store contract (storage/contract.py) is the only way into storage: the layers above name
neither the SQLite backend nor its modules, and the contract lists what the backend offers them."""

from __future__ import annotations

import ast
from pathlib import Path

from mcp_server_conversations.storage import SQLiteStore, Store, open_store

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "mcp_server_conversations"
# What SQLiteStore offers besides the contract: opening by path, and bulk loads for imports and bench.
SQLITE_ONLY = {"open", "path", "bulk_load", "import_messages"}


def imports_above_storage() -> list[tuple[str, str]]:
    """(module file, imported name) for every import in the package outside storage/."""
    out = []
    for path in PACKAGE.rglob("*.py"):
        if "storage" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                out += [(path.name, f"{'.' * node.level}{node.module or ''}:{a.name}") for a in node.names]
            elif isinstance(node, ast.Import):
                out += [(path.name, a.name) for a in node.names]
    return out


def test_nothing_above_storage_names_the_sqlite_backend_or_its_modules() -> None:
    found = imports_above_storage()
    assert not [(f, name) for f, name in found if name.split(":")[0] in ("sqlite3", "aiosqlite")]
    assert not [(f, name) for f, name in found if name.endswith(":SQLiteStore")]
    assert not [(f, name) for f, name in found if ".storage." in name.split(":")[0]]  # the package, not its parts


def test_the_sqlite_store_offers_exactly_the_contract() -> None:
    contract = {n for n in vars(Store) if not n.startswith("_")} | set(Store.__annotations__)
    offered = {n for n in dir(SQLiteStore) if not n.startswith("_")} | {"location"}  # an instance attribute
    assert offered - SQLITE_ONLY == contract


async def test_open_store_gives_a_store_that_answers(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "c.db")
    try:
        await store.ping()
        assert store.location == str(tmp_path / "c.db")
        assert await store.default_agent() is None
    finally:
        await store.close()
