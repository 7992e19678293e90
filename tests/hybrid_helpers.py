"""Hybrid search in tests: the fake provider's embedding model, an indexer that polls often, and
waiting for it. Fixtures `hybrid` (settings with the embedding model) and `quick_indexer` (registered
in tests/conftest.py; modules ask for the latter with `pytest.mark.usefixtures("quick_indexer")`)."""

from __future__ import annotations

import pytest
from fake_provider import FakeProvider
from runtime_helpers import db_rows, eventually

from mcp_server_conversations.config import Settings
from mcp_server_conversations.search.hybrid import EmbeddingIndex

EMBED = "openai/fake-embed"


@pytest.fixture
def quick_indexer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll often and back off briefly, so waiting for the indexer takes milliseconds."""
    monkeypatch.setattr(EmbeddingIndex, "start_delay", 0.0)
    monkeypatch.setattr(EmbeddingIndex, "poll", 0.02)
    monkeypatch.setattr(EmbeddingIndex, "max_backoff", 0.1)


@pytest.fixture
def hybrid(settings: Settings, fake_provider: FakeProvider) -> Settings:
    return settings.model_copy(update={"embedding_model": EMBED})


def pending(settings: Settings) -> int:
    """Searchable messages the indexer has not handled yet."""
    return db_rows(
        settings,
        "SELECT count(*) FROM messages m WHERE search_text IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM message_embeddings e WHERE e.message_rowid = m.rowid AND e.model = ?)",
        (EMBED,),
    )[0][0]


async def indexed(settings: Settings) -> None:
    await eventually(lambda: pending(settings) == 0, "the indexer to embed every searchable message")
