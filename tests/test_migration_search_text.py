"""m006: a file written before it (search_text stored for every row) upgrades in place: the
duplicate text is dropped, search_text is computed, and the FTS index stays in sync."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from foundation_helpers import assert_fts_in_sync

from mcp_server_conversations.storage import NewMessage, SQLiteStore
from mcp_server_conversations.storage import schema as schema_mod

BEFORE_M006 = [name for name, _ in schema_mod.MIGRATIONS].index("m006_computed_search_text")


async def test_a_pre_m006_file_upgrades_without_losing_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:BEFORE_M006])
        store = await SQLiteStore.open(db)
        agent = await store.create_agent(name="a", model=None, system="s", context_window_limit=None, blocks=[])
        conv = await store.create_conversation(agent.id, model=None, summary=None, system_text="zebra prompt")
        old_rows = [  # rows as the old code wrote them: search_text = the indexed text
            ("user_message", "the pottery class starts tuesday", "the pottery class starts tuesday"),
            ("reasoning_message", None, "thinking about glazes"),
            ("assistant_message", "kilns are hot", "kilns are hot\nreasoning about firing"),
        ]
        await store.database.write(lambda w: w.executemany(
            "INSERT INTO messages (id, agent_id, conversation_id, home_conversation_id, message_type, role, "
            "content, created_at, search_text) VALUES (?, ?, ?, ?, ?, 'user', ?, '2025-01-01', ?)",
            [(f"message-old-{i}", agent.id, conv.id, conv.id, kind, content, extra)
             for i, (kind, content, extra) in enumerate(old_rows)],
        ))  # fmt: skip
        await store.close()

    store = await SQLiteStore.open(db)  # applies m006 and later
    try:
        await store.append_messages(conv.id, [NewMessage("user_message", "user", content="painted bowls")])
        found = await store.search(agent_id=agent.id, terms=["glaze", "pottery", "firing", "paint"],
                                   roles=None, start=None, end=None, conversation_id=None, limit=10)
        assert {r.message_id for r in found} >= {"message-old-0", "message-old-1", "message-old-2"}
        assert any(r.content == "painted bowls" for r in found)
    finally:
        await store.close()
    assert_fts_in_sync(db)
    con = sqlite3.connect(db)
    extra = dict(con.execute("SELECT id, search_extra FROM messages WHERE id LIKE 'message-old-%'").fetchall())
    assert extra == {"message-old-0": None, "message-old-1": "thinking about glazes",
                     "message-old-2": "kilns are hot\nreasoning about firing"}
    system = con.execute("SELECT search_text FROM messages WHERE message_type = 'system_message'").fetchall()
    assert system == [(None,)]  # system prompts stay out of search
    con.close()
