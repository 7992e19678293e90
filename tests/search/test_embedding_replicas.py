"""Embedding work shared by server processes on one database: two apps (each its own pool, indexer and
vector cache, as two replicas are) split a backlog and embed each message once (PostgreSQL: claims
are session advisory locks that die with their process), and a vector one of them stores reaches the
other's cached matrix (PostgreSQL: NOTIFY; SQLite: the writer connection's data_version)."""

from __future__ import annotations

from collections import Counter

import pytest
from fake_provider import FakeProvider
from foundation_helpers import say
from hybrid_helpers import pending
from runtime_helpers import eventually

from mcp_server_conversations.app import open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.storage import NewMessage

pytestmark = [pytest.mark.usefixtures("quick_indexer"), pytest.mark.slow, pytest.mark.processes]

CERAMICS = "Ada signed up for a ceramics course on Tuesdays"
FILLER = ["We talked about the marathon training plan", "Grocery list: eggs, spinach, oat milk"]
BACKLOG = 400


async def test_two_replicas_split_a_backlog_and_embed_each_message_once(
    backend: str, settings: Settings, hybrid: Settings, fake_provider: FakeProvider
) -> None:
    if backend != "postgres":
        pytest.skip("claims across processes need PostgreSQL (SQLite's are per process)")
    async with open_app(settings) as app:  # no embedding model: a backlog builds up
        conv = await app.service.create_conversation()
        texts = [f"backlog note number {i}" for i in range(BACKLOG)]
        await app.store.import_messages([(conv.id, [NewMessage("user_message", "user", content=t) for t in texts])])
    fake_provider.embedding_delay = 0.05  # each request takes a while: both indexers are at work together
    async with open_app(hybrid) as a, open_app(hybrid) as b:
        assert a.store.database is not b.store.database  # type: ignore[attr-defined]
        await eventually(lambda: pending(hybrid) == 0, "the backlog to be embedded", within=60)
        embedded = Counter(t for request in fake_provider.embedding_inputs for t in request)
        assert sorted(embedded) == sorted(texts)
        assert set(embedded.values()) == {1}, [t for t, n in embedded.items() if n > 1][:5]  # each exactly once
        await eventually(  # each claim is given up once its vectors are stored
            lambda: not a.store.database.claimed and not b.store.database.claimed,  # type: ignore[attr-defined]
            "the claims to be released",
        )


async def test_a_vector_stored_by_one_replica_reaches_the_others_cached_matrix(hybrid: Settings) -> None:
    async with open_app(hybrid) as a, open_app(hybrid) as b:
        conv = (await a.service.create_conversation()).id
        await say(a.store, conv, *FILLER)
        await eventually(lambda: pending(hybrid) == 0, "the filler to be embedded")
        found = await b.service.search("pottery")  # b loads and caches the agent's matrix
        assert CERAMICS not in [r.content for r in found.results]
        await say(a.store, conv, CERAMICS)  # a writes and embeds it: b's cache does not have it
        await eventually(lambda: pending(hybrid) == 0, "the new message to be embedded")

        async def b_finds_it() -> bool:
            return [r.content for r in (await b.service.search("pottery", limit=1)).results] == [CERAMICS]

        await eventually(b_finds_it, "the other replica's search to find the new vector")
