"""Named tokens in the store, on both backends: a name is unique among active tokens, a revoke is
seen at once by another store on the same database (another process or replica), only hashes are
kept, last use moves forward only, and a revoked name can be given again."""

from __future__ import annotations

import asyncio

import pytest

from mcp_server_conversations.config import Settings
from mcp_server_conversations.errors import ConflictError
from mcp_server_conversations.named_tokens import name_problem, new_token, token_hash
from mcp_server_conversations.storage import Store, open_store


async def test_create_find_list_and_revoke(store: Store) -> None:
    assert not await store.any_tokens()
    token = new_token()
    made = await store.create_token("alice", token_hash(token))
    assert made.name == "alice" and made.last_used_at is None and made.revoked_at is None
    assert await store.any_tokens()
    assert await store.token_name(token_hash(token)) == "alice"
    assert await store.token_name(token_hash(new_token())) is None
    with pytest.raises(ConflictError, match="alice"):
        await store.create_token("alice", token_hash(new_token()))
    assert [t.name for t in await store.list_tokens()] == ["alice"]

    assert await store.revoke_token("alice")
    assert not await store.revoke_token("alice")  # nothing active left to revoke
    assert not await store.revoke_token("nobody")
    assert await store.token_name(token_hash(token)) is None
    assert not await store.any_tokens()
    assert await store.list_tokens() == []
    [revoked] = await store.list_tokens(include_revoked=True)
    assert revoked.revoked_at is not None

    again = new_token()  # the name is free again; the old token stays refused
    await store.create_token("alice", token_hash(again))
    assert await store.token_name(token_hash(again)) == "alice"
    assert await store.token_name(token_hash(token)) is None
    assert len(await store.list_tokens(include_revoked=True)) == 2


async def test_last_use_only_moves_forward(store: Store) -> None:
    h = token_hash(new_token())
    await store.create_token("bob", h)
    await store.touch_tokens({h: "2026-05-01T00:00:00.000000Z"})
    await store.touch_tokens({h: "2026-04-01T00:00:00.000000Z"})  # a slower process reporting late
    await store.touch_tokens({})
    [info] = await store.list_tokens()
    assert info.last_used_at == "2026-05-01T00:00:00.000000Z"


async def test_another_store_on_the_same_database_sees_creates_and_revokes_at_once(settings: Settings) -> None:
    a, b = await open_store(settings.resolved_db()), await open_store(settings.resolved_db())
    try:
        token = new_token()
        await a.create_token("carol", token_hash(token))
        assert await b.any_tokens()
        assert await b.token_name(token_hash(token)) == "carol"
        assert await b.revoke_token("carol")
        assert await a.token_name(token_hash(token)) is None
    finally:
        await a.close()
        await b.close()


async def test_racing_creators_of_one_name_make_one_token(settings: Settings) -> None:
    a, b = await open_store(settings.resolved_db()), await open_store(settings.resolved_db())
    try:
        got = await asyncio.gather(
            *(s.create_token("dave", token_hash(new_token())) for s in (a, b, a, b)), return_exceptions=True
        )
        assert sum(not isinstance(g, BaseException) for g in got) == 1
        assert all(isinstance(g, ConflictError) for g in got if isinstance(g, BaseException))
        assert len(await a.list_tokens(include_revoked=True)) == 1
    finally:
        await a.close()
        await b.close()


def test_tokens_are_random_prefixed_and_names_checked() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(t.startswith("mcsc_") and "." not in t and len(t) > 40 for t in tokens)
    assert token_hash("x") == token_hash(b"x") and len(token_hash("x")) == 64
    for good in ("alice", "alice@example.com", "ci-bot.2", "A" * 64):
        assert name_problem(good) is None
    for bad in ("", " alice", "-x", "a b", "a/b", "a" * 65, "ünï", "x\n"):
        assert name_problem(bad) is not None
