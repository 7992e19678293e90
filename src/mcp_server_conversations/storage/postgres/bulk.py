"""Bulk loading on PostgreSQL with COPY: imports, `copy` into PostgreSQL, benchmarks.

Rows go in through asyncpg's binary COPY (`copy_records_to_table`), which skips the per-row
parameter handling of INSERT … unnest. Messages need their `search_tsv` computed by the server
(`to_tsvector('conv', …)`), which COPY cannot do: they are copied into a temporary table dropped at
commit, then moved with one INSERT … SELECT that computes it. Keys are allocated up front from the
identity's sequence after the conversations' rows are locked, so within a conversation they still
increase in commit order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import NotFoundError
from ..rows import MESSAGE_FIELDS, message_values
from ..types import NewMessage
from .base import Conn
from .text import indexed_text

MESSAGE_COLUMNS = ("rowid", *MESSAGE_FIELDS)
STAGING = "conv_import_messages"


async def copy_messages(c: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert message rows (MESSAGE_COLUMNS, then the normalized search text or None) with their keys
    given, indexed for search, inside the caller's transaction."""
    if not rows:
        return
    cols = ", ".join(MESSAGE_COLUMNS)
    await c.execute(
        f"CREATE TEMP TABLE {STAGING} ON COMMIT DROP AS SELECT {cols}, NULL::text AS norm FROM messages WITH NO DATA"
    )
    await c.copy_records_to_table(STAGING, records=rows, columns=[*MESSAGE_COLUMNS, "norm"])
    await c.execute(
        f"INSERT INTO messages ({cols}, search_tsv) OVERRIDING SYSTEM VALUE "
        f"SELECT {cols}, to_tsvector('conv', norm) FROM {STAGING} ORDER BY rowid"
    )
    await c.execute(f"DROP TABLE {STAGING}")  # a second batch in the same transaction makes it again


async def copy_rows(c: Conn, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows of a table without computed columns, by COPY, inside the caller's transaction."""
    if rows:
        await c.copy_records_to_table(table, records=[tuple(r) for r in rows], columns=list(columns))


async def import_messages(c: Conn, batches: Sequence[tuple[str, list[NewMessage]]], in_context: bool) -> int:
    """`import_messages` of the Store's bulk path, in the caller's transaction: the conversations'
    rows locked (in id order: two imports never wait on each other crosswise), keys allocated in one
    statement, the rows copied, every conversation's context and count updated by one statement."""
    conv_ids = sorted({conv_id for conv_id, messages in batches if messages})
    found = await c.fetch(
        "SELECT id, agent_id FROM conversations WHERE id = ANY($1::text[]) ORDER BY id FOR NO KEY UPDATE", conv_ids
    )
    agents = {r["id"]: r["agent_id"] for r in found}
    missing = [i for i in conv_ids if i not in agents]
    if missing:
        raise NotFoundError("conversation", missing[0])
    total = sum(len(messages) for _, messages in batches)
    keys = iter(
        sorted(
            await c.fetchval(
                "SELECT array_agg(nextval(pg_get_serial_sequence('messages', 'rowid'))) FROM generate_series(1, $1)",
                total,
            )
        )
    )
    rows: list[tuple[Any, ...]] = []
    added: dict[str, list[int]] = {}
    counted: dict[str, int] = {}
    for conv_id, messages in batches:
        agent_id = agents.get(conv_id, "")
        for m in messages:
            key = next(keys)
            rows.append((key, *message_values(conv_id, agent_id, m), indexed_text(m)))
            if in_context:
                added.setdefault(conv_id, []).append(key)
            if m.message_type != "system_message":
                counted[conv_id] = counted.get(conv_id, 0) + 1
    await copy_messages(c, rows)
    targets = sorted(set(added) | set(counted))
    await c.execute(
        "UPDATE conversations AS c SET context = c.context || u.added::bigint[], "
        "message_count = c.message_count + u.n "
        "FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS t(id, added, n)) AS u WHERE c.id = u.id",
        targets,
        [_array_text(added.get(t, [])) for t in targets],
        [counted.get(t, 0) for t in targets],
    )
    return len(rows)


def _array_text(keys: list[int]) -> str:
    """A bigint[] literal: unnest cannot take an array of arrays of different lengths."""
    return "{" + ",".join(map(str, keys)) + "}"
