"""Helpers shared by the foundation tests (storage, service, tools, search, forks)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pg_helpers import TestDatabase

from mcp_server_conversations.config import is_database_url
from mcp_server_conversations.models import Message
from mcp_server_conversations.storage import NewMessage, SQLiteStore
from mcp_server_conversations.storage.base import all_in
from mcp_server_conversations.storage.rows import MESSAGE_COLUMNS, message_from_row, pack, unpack

TOKENIZER = "porter unicode61 remove_diacritics 2"


def assert_fts_in_sync(path: str | Path) -> None:
    """The live FTS index holds exactly the tokens of the messages that have search text.

    Builds a fresh index of `messages.search_text` in a temp table and compares both indexes
    token by token (fts5vocab 'instance'), through a separate stdlib connection. On PostgreSQL: each
    message's tsvector is that of its search text, normalized."""
    if is_database_url(path):
        return _assert_tsv_in_sync(str(path))
    con = sqlite3.connect(path)
    try:
        con.execute(f"CREATE VIRTUAL TABLE temp.fresh USING fts5(search_text, tokenize='{TOKENIZER}')")
        con.execute(
            "INSERT INTO temp.fresh(rowid, search_text) SELECT rowid, search_text FROM messages "
            "WHERE search_text IS NOT NULL"
        )
        con.execute("CREATE VIRTUAL TABLE temp.live_vocab USING fts5vocab(main, messages_fts, instance)")
        con.execute("CREATE VIRTUAL TABLE temp.fresh_vocab USING fts5vocab(temp, fresh, instance)")
        q = "SELECT term, doc, offset FROM temp.{} ORDER BY doc, offset, term"
        live = con.execute(q.format("live_vocab")).fetchall()
        fresh = con.execute(q.format("fresh_vocab")).fetchall()
        assert live == fresh, "messages_fts is out of sync with messages.search_text"
        indexed = {r[0] for r in con.execute("SELECT id FROM messages_fts_docsize")}
        expected = {r[0] for r in con.execute("SELECT rowid FROM messages WHERE search_text IS NOT NULL")}
        assert indexed == expected
    finally:
        con.close()


def _assert_tsv_in_sync(url: str) -> None:
    from mcp_server_conversations.storage.postgres.text import SEARCH_TEXT, normalize

    rows = _pg(url).rows(f"SELECT rowid, {SEARCH_TEXT} AS text, search_tsv::text AS tsv FROM messages m")
    for r in rows:
        expected = None
        if r["text"] is not None:
            expected = _pg(url).rows("SELECT to_tsvector('conv', ?)::text", (normalize(r["text"]),))[0][0]
        assert r["tsv"] == expected, f"message {r['rowid']}: search_tsv is out of sync with its text"


def _pg(url: str) -> TestDatabase:
    db = TestDatabase.__new__(TestDatabase)
    db.url = url
    return db


def _pg_sql(sql: str) -> str:
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], start=1))


def on_pg(store: Any) -> bool:
    return type(store).__name__ == "PostgresStore"


def count_rows(path: str | Path, table: str, where: str = "1", params: tuple = ()) -> int:
    if is_database_url(path):
        return int(
            _pg(str(path)).rows(f"SELECT count(*) FROM {table} WHERE {'TRUE' if where == '1' else where}", params)[0][0]
        )
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
    finally:
        con.close()


async def say(store: SQLiteStore, conv_id: str, *texts: str, role: str = "user", **kw) -> list[Message]:
    """Append plain messages (user, or assistant when role='assistant') to a conversation."""
    kind = {"user": "user_message", "assistant": "assistant_message", "tool": "tool_return_message"}[role]
    return await store.append_messages(conv_id, [NewMessage(kind, role, content=t, **kw) for t in texts])


async def turn(store: SQLiteStore, conv_id: str, user: str, reply: str) -> list[Message]:
    """A user message and the assistant's reply."""
    return await store.append_messages(
        conv_id,
        [NewMessage("user_message", "user", content=user), NewMessage("assistant_message", "assistant", content=reply)],
    )


# Reads and writes the SQLite backend's tests make underneath the Store contract: through the store's
# own Database (its reader or writer thread), so they see what it committed and wait behind its writes.


# On PostgreSQL the same SQL runs with `?` placeholders turned into $n.


async def sql_one(store: Any, sql: str, params: tuple | dict = ()) -> Any:
    if on_pg(store):
        return await store.database.read(lambda c: c.fetchrow(_pg_sql(sql), *params))
    return await store.database.read(lambda db: db.execute(sql, params).fetchone())


async def sql_all(store: Any, sql: str, params: tuple | dict = ()) -> list[Any]:
    if on_pg(store):
        return await store.database.read(lambda c: c.fetch(_pg_sql(sql), *params))
    return await store.database.read(lambda db: db.execute(sql, params).fetchall())


async def sql_write(store: Any, sql: str, params: tuple | dict = ()) -> None:
    """One statement as its own write transaction."""
    if on_pg(store):
        await store.database.write(lambda c: c.execute(_pg_sql(sql), *params))
        return
    await store.database.write(lambda db: db.execute(sql, params))


async def get_message(store: SQLiteStore, message_id: str) -> Message:
    """A stored message by id, as history shows it (in_context False)."""
    row = await sql_one(store, f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,))
    assert row is not None, message_id
    return message_from_row(row, False)


async def count_embeddings(store: SQLiteStore, model: str | None = None) -> int:
    """How many messages have a (non-empty) vector, for `model` or any."""
    sql, params = "SELECT count(*) FROM message_embeddings WHERE dim > 0", ()
    if model is not None:
        sql, params = sql + " AND model = ?", (model,)
    row = await sql_one(store, sql, params)
    return int(row[0]) if row else 0


async def remove_from_context(store: SQLiteStore, conv_id: str, message_ids: list[str], *, mark_err: bool) -> None:
    """Take messages out of a conversation's context window (they stay in history), optionally marking
    them is_err: what compaction or an abandoned run leaves behind, made directly."""
    if on_pg(store):
        await sql_write(
            store,
            "UPDATE conversations SET context = ARRAY(SELECT x FROM unnest(context) WITH ORDINALITY AS u(x, o) "
            "WHERE x NOT IN (SELECT rowid FROM messages WHERE id = ANY(?::text[])) ORDER BY o) WHERE id = ?",
            (message_ids, conv_id),
        )
        if mark_err:
            await sql_write(store, "UPDATE messages SET is_err = 1 WHERE id = ANY(?::text[])", (message_ids,))
        return

    def remove(db: sqlite3.Connection) -> None:
        drop = {r["rowid"] for r in all_in(db, "SELECT rowid FROM messages WHERE id IN ({ids})", message_ids)}
        (context,) = db.execute("SELECT context FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        db.execute(
            "UPDATE conversations SET context = ? WHERE id = ?",
            (pack([i for i in unpack(context) if i not in drop]), conv_id),
        )
        if mark_err and drop:
            db.execute(f"UPDATE messages SET is_err = 1 WHERE rowid IN ({','.join('?' * len(drop))})", list(drop))

    await store.database.write(remove)
