"""Copying everything from one database to another, either backend to either: agents, blocks,
conversations, messages (with their keys, so contexts and forks stay as they were), runs, message
embeddings and named tokens (their hashes), ids and timestamps kept. The target indexes messages
for search as they arrive. Claimed turns are not copied: they belong to the processes running on
the source."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from ..errors import ConflictError
from .contract import Store
from .rows import MESSAGE_FIELDS, pack, unpack

BATCH = 2000
AGENT = (
    "id",
    "name",
    "model",
    "system",
    "context_window_limit",
    "is_default",
    "created_at",
    "description",
    "tags",
    "model_settings",
    "default_conversation_id",
    "principal",
)
BLOCK = (
    "id",
    "agent_id",
    "label",
    "value",
    "description",
    "char_limit",
    "read_only",
    "created_at",
    "updated_at",
    "version",
)
BLOCK_VERSION = ("block_id", "version", "value", "changed_at", "changed_by")
CONVERSATION = (
    "id",
    "agent_id",
    "summary",
    "model",
    "created_at",
    "last_run_completion",
    "forked_from_conversation_id",
    "forked_from_message_id",
    "system_rowid",
    "inherited",
    "context",
    "message_count",
)
MESSAGE = ("rowid", *MESSAGE_FIELDS)
RUN = (
    "id",
    "conversation_id",
    "agent_id",
    "model",
    "status",
    "stop_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "error",
    "idempotency_key",
    "created_at",
    "started_at",
    "completed_at",
    "owner",
    "cancel_requested",
    "context_before",
    "principal",
)
EMBEDDING = ("message_rowid", "agent_id", "model", "dim", "vector")
TOKEN = ("token_hash", "name", "created_at", "last_used_at", "revoked_at")
# (table, columns, the source's order: blocks and queued runs keep their order by insertion)
TABLES = [
    ("agents", AGENT, "created_at, id"),
    ("blocks", BLOCK, None),
    ("block_versions", BLOCK_VERSION, "block_id, version"),
    ("conversations", CONVERSATION, "created_at, id"),
    ("messages", MESSAGE, None),
    ("runs", RUN, None),
    ("message_embeddings", EMBEDDING, "message_rowid"),
    ("tokens", TOKEN, "created_at, token_hash"),
]
ARRAYS = {"inherited", "context", "context_before"}  # key lists: packed blobs in SQLite, bigint[] in PostgreSQL


def _is_pg(store: Store) -> bool:
    return type(store).__name__ == "PostgresStore"


async def copy_store(source: Store, target: Store, progress: Callable[[str, int], None]) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; ConflictError if the target holds data.
    `progress(table, rows so far)` is called after each batch. Returns rows copied per table."""
    if await _count(target, "agents") or await _count(target, "messages"):
        raise ConflictError(f"the target database {target.location} is not empty; copy only into a new database")
    copied: dict[str, int] = {}
    for table, columns, _ in TABLES:
        done = 0
        async for rows in _read(source, table, columns):
            await _write(target, table, columns, rows)
            done += len(rows)
            progress(table, done)
        copied[table] = done
    if _is_pg(target):  # later messages take keys above the copied ones
        await _database(target).write(
            lambda c: c.execute(
                "SELECT setval(pg_get_serial_sequence('messages', 'rowid'), coalesce(max(rowid), 0) + 1, false) "
                "FROM messages"
            )
        )
    return copied


async def _count(store: Store, table: str) -> int:
    sql = f"SELECT count(*) FROM {table}"
    if _is_pg(store):
        return int(await _database(store).read(lambda c: c.fetchval(sql)))
    return int(await _database(store).read(lambda db: db.execute(sql).fetchone()[0]))


async def _read(store: Store, table: str, columns: tuple[str, ...]) -> AsyncIterator[list[dict[str, Any]]]:
    """The table's rows in batches, in their stored order (keyset pages over an increasing key)."""
    pg = _is_pg(store)
    key: str | None = {"blocks": "seq", "runs": "seq", "messages": "rowid"}.get(table) if pg else "rowid"
    if table == "message_embeddings":
        key = "message_rowid"
    if table == "block_versions":  # no single increasing key (and no rowid in SQLite): read whole
        key = None
    cols = ", ".join(columns)
    if key is None:  # PostgreSQL's agents and conversations have no insertion key: by creation (and by block)
        order_by = {t: o for t, _, o in TABLES}[table]
        sql = f"SELECT {cols} FROM {table} ORDER BY {order_by}"
        if pg:
            rows = await _database(store).read(lambda c: c.fetch(sql))
        else:
            rows = await _database(store).read(lambda db: db.execute(sql).fetchall())
        for i in range(0, len(rows), BATCH):
            yield [dict(r) for r in rows[i : i + BATCH]]
        return
    sql = f"SELECT {key} AS k_, {cols} FROM {table} WHERE {key} > {{}} ORDER BY {key} LIMIT {BATCH}"
    after = -1
    while True:
        if pg:
            got = await _database(store).read(lambda c, a=after: c.fetch(sql.format("$1"), a))
        else:
            got = await _database(store).read(lambda db, a=after: db.execute(sql.format("?"), (a,)).fetchall())
        if not got:
            return
        after = got[-1]["k_"]
        out = []
        for r in got:
            row = {c: r[c] for c in columns}
            if not pg:
                for c in ARRAYS & row.keys():
                    row[c] = unpack(row[c]) if row[c] is not None else None
            out.append(row)
        yield out


async def _write(store: Store, table: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = ", ".join(columns)
    if _is_pg(store):  # by COPY; messages indexed for search on arrival
        from .postgres import bulk
        from .postgres.text import normalize

        values = [[r[c] for c in columns] for r in rows]
        if table == "messages":
            for r, v in zip(rows, values, strict=True):
                text = None
                if r["message_type"] != "system_message":
                    text = r["search_extra"] or (r["content"] or None)
                v.append(normalize(text) if text else None)
            await _database(store).write(lambda c: bulk.copy_messages(c, [tuple(v) for v in values]))
        else:
            await _database(store).write(lambda c: bulk.copy_rows(c, table, columns, values))
        return
    sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(columns))})"
    params = [[pack(r[c]) if c in ARRAYS and r[c] is not None else r[c] for c in columns] for r in rows]
    await _database(store).write(lambda db: db.executemany(sql, params))


def _database(store: Store) -> Any:
    """The backend's unit-of-work runner: copying works below the contract, on rows."""
    return cast(Any, store).database
