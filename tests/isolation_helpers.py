"""Shared pieces of the isolation tests: what principal A owns, a snapshot of every stored row, and
the error an unknown id of the same kind gets (another principal's id must get exactly that)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime_helpers import db_rows

from mcp_server_conversations.config import Settings

# Every table that holds a principal's data, with a key that orders it the same way on both backends.
TABLE_KEYS = {
    "agents": "id",
    "blocks": "id",
    "conversations": "id",
    "messages": "id",
    "runs": "id",
    "turns": "conversation_id",
    "message_embeddings": "message_rowid",
}
SECRET = "zanzibar"  # a word only A's messages hold: B's searches must never return it
UNKNOWN = {
    "agent": "agent-00000000-0000-4000-8000-000000000000",
    "conversation": "conv-00000000-0000-4000-8000-000000000000",
    "run": "run-00000000-0000-4000-8000-000000000000",
    "block": "block-00000000-0000-4000-8000-000000000000",
    "message": "message-00000000-0000-4000-8000-000000000000",
}


@dataclass
class Owned:
    """Ids of what principal A made: an agent with blocks, conversations (one forked), messages, runs."""

    agent: str
    default_agent: str
    block: str
    conversation: str
    fork: str
    message: str
    run: str
    idempotency_key: str

    def ids(self) -> set[str]:
        return {self.agent, self.default_agent, self.block, self.conversation, self.fork, self.message, self.run}


def snapshot(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as plain tuples in a stable order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, key in TABLE_KEYS.items():
        out[table] = [tuple(r) for r in db_rows(settings, f"SELECT * FROM {table} ORDER BY {key}")]
    return out


def as_unknown(message: str, owned_id: str, unknown_id: str) -> str:
    """An error message about `unknown_id` as it would read about `owned_id`."""
    return message.replace(unknown_id, owned_id)
