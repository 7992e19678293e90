"""Full-text ranking on both backends: the agent's own term statistics, the next turn's share of
a match, and dates in the question."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from foundation_helpers import say

from mcp_server_conversations.config import Settings
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import Store, ranking


@pytest.fixture
async def svc(settings: Settings, store: Store) -> AsyncIterator[ConversationService]:
    yield ConversationService(store, settings)


async def ranked(svc: ConversationService, query: str, agent_id: str, **kw) -> list[tuple[str, float]]:
    return [(r.content or "", r.score) for r in (await svc.search(query, agent_id=agent_id, **kw)).results]


async def test_another_agents_messages_never_move_this_agents_ranking(svc: ConversationService, store: Store) -> None:
    mine, theirs = await svc.create_agent(name="mine"), await svc.create_agent(name="theirs")
    conv = await svc.create_conversation(mine.id)
    await say(
        store,
        conv.id,
        "the pottery class starts on Tuesday evening",
        "my kiln broke right before class",
        "glaze and pottery tools on the shopping list",
        "weekend plans with the neighbours",
    )
    before = await ranked(svc, "pottery class kiln", mine.id)
    other = await svc.create_conversation(theirs.id)
    await say(store, other.id, *[f"pottery class number {i}, pottery again" for i in range(300)])
    await say(store, other.id, *[f"kiln log {i}" for i in range(5)])
    assert await ranked(svc, "pottery class kiln", mine.id) == before


async def test_a_name_in_most_of_an_agents_messages_stops_deciding_the_ranking(
    svc: ConversationService, store: Store
) -> None:
    agent, busy = await svc.create_agent(name="pair"), await svc.create_agent(name="busy")
    noise = await svc.create_conversation(busy.id)  # makes the name rare in the database as a whole
    await say(store, noise.id, *[f"status report {i} for the quarterly review" for i in range(200)])
    conv = await svc.create_conversation(agent.id)
    await say(store, conv.id, "Maria: hi", "Maria: ok", "Maria: sure thing", "Maria: see you", "Maria: lol")
    await say(store, conv.id, "Jonas: I signed up for an evening ceramics course at the college", role="assistant")
    top = await ranked(svc, "Maria ceramics", agent.id)
    assert top[0][0].startswith("Jonas: I signed up for an evening ceramics course")


async def test_the_turn_after_a_match_shares_its_score(
    svc: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await svc.create_agent(name="pair")
    conv = await svc.create_conversation(agent.id)
    await say(store, conv.id, "Jonas: good morning", "Jonas: see you later", "Jonas: ha", role="assistant")
    await say(store, conv.id, "Maria: which breed did you adopt from the shelter?")
    await say(store, conv.id, "Jonas: a little beagle, he chews every shoe in the flat", role="assistant")
    await say(store, conv.id, "Jonas: that sounds fun", "Jonas: ok", "Maria: the weather is nice", role="assistant")
    question = "Which breed did Jonas adopt from the shelter?"
    top = [text for text, _ in await ranked(svc, question, agent.id)]
    assert top[:2] == [
        "Maria: which breed did you adopt from the shelter?",
        "Jonas: a little beagle, he chews every shoe in the flat",
    ]
    assert "Maria: the weather is nice" not in top  # a next turn that matches nothing is not added
    monkeypatch.setattr(ranking, "NEXT_SHARE", 0.0)  # without the signal, shorter name-only turns come first
    top = [text for text, _ in await ranked(svc, question, agent.id)]
    assert top[1] != "Jonas: a little beagle, he chews every shoe in the flat"


async def test_a_date_in_the_question_searches_its_span_first(svc: ConversationService, store: Store) -> None:
    agent = await svc.create_agent(name="cook")
    conv = await svc.create_conversation(agent.id)
    for when, text in [
        ("2023-03-12T18:00:00.000000Z", "we cooked a big paella for the neighbours"),
        ("2023-05-14T18:00:00.000000Z", "we cooked risotto with the last mushrooms"),
        ("2023-07-09T18:00:00.000000Z", "we cooked a curry, far too spicy"),
        ("2023-07-10T18:00:00.000000Z", "notes: May 2023 budget"),  # the date as words: never matched as such
    ]:
        await say(store, conv.id, text, created_at=when)
    top = [text for text, _ in await ranked(svc, "What did we cook in May 2023?", agent.id)]
    assert top[0] == "we cooked risotto with the last mushrooms"
    assert len(top) == 3 and "notes: May 2023 budget" not in top  # the rest of the page from the whole scope
    # a span the search's own bounds exclude is ignored; bounds still apply
    top = [text for text, _ in await ranked(svc, "cooked on 14 May 2023", agent.id, start_date="2023-07-01")]
    assert top == ["we cooked a curry, far too spicy"]
    # nothing in the span: the whole scope answers
    assert len(await ranked(svc, "what did we cook in 2019", agent.id)) == 3


async def test_in_a_date_span_a_message_dating_what_it_tells_to_the_asked_day_comes_first(
    svc: ConversationService, store: Store
) -> None:
    agent = await svc.create_agent(name="runner")
    conv = await svc.create_conversation(agent.id)
    for when, text in [
        ("2023-04-28T09:00:00.000000Z", "Jonas: ok"),  # on the day, tells of nothing
        ("2023-05-01T18:00:00.000000Z", "Jonas: Three days ago I ran a half marathon and beat my best"),
        ("2023-05-01T18:05:00.000000Z", "Jonas: sure"),
        ("2023-05-02T10:00:00.000000Z", "Jonas: yesterday the bus never came"),  # tells of 1 May
        ("2023-05-20T10:00:00.000000Z", "Jonas: three days ago I ran again"),  # outside the span
    ]:
        await say(store, conv.id, text, created_at=when)
    top = [text for text, _ in await ranked(svc, "What race did Jonas finish on 28 April 2023?", agent.id)]
    assert top[0] == "Jonas: Three days ago I ran a half marathon and beat my best"
    assert top[-1] == "Jonas: three days ago I ran again"  # the span first, the rest of the scope after


async def test_a_date_question_finds_a_message_telling_of_that_day_that_shares_no_other_word(
    svc: ConversationService, store: Store
) -> None:
    agent = await svc.create_agent(name="plain")
    conv = await svc.create_conversation(agent.id)
    for when, text in [
        ("2023-04-28T09:00:00.000000Z", "the race results page is down again"),
        ("2023-05-01T18:00:00.000000Z", "three days ago I ran a half marathon and beat my best"),
        ("2023-05-01T18:05:00.000000Z", "this morning the printer jammed"),  # tells of 1 May
        ("2023-06-20T10:00:00.000000Z", "a race for charity next month"),
    ]:
        await say(store, conv.id, text, created_at=when)
    top = [text for text, _ in await ranked(svc, "Which race did Jonas finish on 28 April 2023?", agent.id)]
    assert top[0] == "three days ago I ran a half marathon and beat my best"
    assert "this morning the printer jammed" not in top  # date words alone count only when they tell of the day
    assert top.index("the race results page is down again") < top.index("a race for charity next month")
