"""Search never crosses principals: full-text and hybrid (vector) search alike return only the acting
principal's messages, and another principal's agent or conversation is not found."""

from __future__ import annotations

import pytest
from fake_provider import FakeProvider
from foundation_helpers import say
from hybrid_helpers import EMBED, pending
from runtime_helpers import eventually
from test_hybrid_search import CERAMICS, FILLER

from mcp_server_conversations import principals
from mcp_server_conversations.app import App, open_app
from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import NotFoundError

pytestmark = pytest.mark.usefixtures("quick_indexer")

A, B = principals.for_token("alice"), principals.for_token("bob")


async def own_conversation(app: App, principal: str, *texts: str) -> tuple[str, str]:
    with principals.acting_as(principal):
        conv = await app.service.create_conversation()
    await say(app.store, conv.id, *texts)
    return conv.agent_id, conv.id


@pytest.mark.parametrize("embedding", [None, EMBED], ids=["full-text", "hybrid"])
async def test_search_sees_only_the_principals_messages(
    settings: Settings, fake_provider: FakeProvider, embedding: str | None
) -> None:
    settings = settings.model_copy(update={"embedding_model": embedding})
    async with open_app(settings) as app:
        a_agent, a_conv = await own_conversation(app, A, CERAMICS, "pottery wheel at the studio")
        b_agent, b_conv = await own_conversation(app, B, *FILLER)
        if embedding:
            assert app.service.hybrid is not None
            await app.service.hybrid.index_pending()  # now, rather than on the indexer's next look
            await eventually(lambda: pending(settings) == 0, "the indexer to embed every message")
        with principals.acting_as(B):
            found = (await app.service.search("pottery ceramics studio", limit=100)).results
            assert {r.conversation_id for r in found} <= {b_conv}
            assert bool(found) == bool(embedding)  # hybrid: B's nearest rows; full-text: no word of B's matches
            assert not any("pottery" in (r.content or "") or r.content == CERAMICS for r in found)
            for scope in ({"agent_id": a_agent}, {"conversation_id": a_conv}):
                with pytest.raises(NotFoundError) as e:
                    await app.service.search("pottery", **scope)  # type: ignore[arg-type]
                assert (
                    str(e.value) == f"{next(iter(scope))[:-3].replace('_', ' ')} {next(iter(scope.values()))} not found"
                )
        with principals.acting_as(A):
            mine = (await app.service.search("pottery", limit=100)).results
            assert "pottery wheel at the studio" in {r.content for r in mine}
            assert {r.conversation_id for r in mine} == {a_conv}
