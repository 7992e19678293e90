"""Search quality: recall@5 / recall@10 of `conversation_search` on a small deterministic
multi-session Q&A set, beside a baseline that requires every word of the question (AND).

Facts are stated in one session in one word form ("Ada started pottery classes"); the
questions come later in natural language with other forms and extra words ("when did Ada
start going to the pottery class?"). Distractors share the names and the topics.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from mcp_server_conversations.search.query import terms
from mcp_server_conversations.storage import NewMessage, SQLiteStore

from .common import Figure, Sizes
from .storage_bench import open_service

NAMES = ["Ada", "Bruno", "Chloe", "Dmitri", "Esther", "Farid", "Greta", "Hiro", "Ingrid", "Jonas", "Keiko", "Luis"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CITIES = ["Lisbon", "Krakow", "Osaka", "Denver", "Nairobi", "Porto", "Quebec", "Tallinn"]

# (fact as said in a session, question asked later): other word forms, extra words.
FACTS = [
    ("{name} started pottery classes on {day}; throwing bowls on the wheel is harder than it looks",
     "when did {name} start going to the pottery class?"),
    ("{name} adopted a rescue greyhound named Pepper last spring",
     "what is the name of the dog {name} adopted?"),
    ("{name} is moving to {city} in the autumn for a job at a robotics startup",
     "which city is {name} planning to move to?"),
    ("{name} has been painting watercolour landscapes every weekend",
     "what kind of paintings does {name} paint?"),
    ("{name} ran the half marathon in 1 hour 52 minutes, a personal best",
     "how fast did {name} run the half-marathon race?"),
    ("{name} is allergic to peanuts and always carries an epipen",
     "does {name} have any food allergies I should know about?"),
    ("{name} finished reading the trilogy about the lighthouse keepers",
     "which books has {name} been reading lately?"),
    ("{name} learned to bake sourdough bread with a starter from a neighbour",
     "who gave {name} the sourdough starter for baking?"),
    ("{name} broke an ankle while skiing in the Alps in February",
     "how did {name} get injured on the ski trip?"),
    ("{name} volunteers at the community garden growing tomatoes and squash",
     "what vegetables does {name} grow when volunteering?"),
    ("{name} bought a secondhand cello and takes lessons on {day} evenings",
     "what instrument is {name} learning to play?"),
    ("{name} celebrated a wedding anniversary with a trip to {city}",
     "where did {name} go to celebrate the anniversary?"),
    ("{name} switched careers from accounting to nursing after the pandemic",
     "what job did {name} have before becoming a nurse?"),
    ("{name} is training for a triathlon by swimming laps each morning",
     "which race is {name} swimming every morning to train for?"),
    ("{name} keeps bees on the roof and harvested twelve jars of honey",
     "how much honey did {name}'s beehives produce?"),
    ("{name} prefers tea over coffee and drinks jasmine green tea",
     "what does {name} like to drink, coffee or tea?"),
]
FILLER = (
    "sounds good, let me know how it goes and we can talk again next week",
    "I was thinking about what you said the other day and it made a lot of sense",
    "the weather has been strange lately, sunny in the morning and rain all afternoon",
    "can you remind me to call the bank tomorrow about the card",
    "I need to plan the week better, too many meetings on the calendar",
    "what time is it in {city} right now, I have a call with a colleague there",
    "thanks, that recipe turned out great, even the kids liked it",
    "my laptop keeps going to sleep during video calls, any idea why",
    "we should start planning the summer holidays before prices go up",
    "I went for a long walk by the river, it helped clear my head",
    "{name} said hello, we had lunch together near the office",
    "{name} might join us for dinner on {day} if the train is on time",
    "the new project kicked off today and the team seems motivated",
    "I keep forgetting where I put my keys, I should buy one of those trackers",
)
DISTRACTORS = (
    "{name} asked me about {a} yesterday, and somehow we ended up talking about {b}",
    "I read an article on {a}; {name} thinks {b} is overrated",
    "{name} keeps sending me videos about {a} and {b}, it's a bit much",
    "not sure about {a} this year, maybe {b} instead, {name} will decide",
)
REPLIES = (
    "That's great to hear! Let me know if there's anything I can help with.",
    "Noted. I'll remember that for next time.",
    "Interesting — thanks for telling me. How do you feel about it?",
    "Good luck with that! It sounds like a lot of work but worth it.",
)


def dataset(seed: int = 11, sessions: int = 40) -> tuple[list[list[NewMessage]], list[tuple[str, str]]]:
    """Sessions (lists of messages) and questions with the id of the message that answers each."""
    rng = random.Random(seed)
    facts = [(f, q, name) for f, q in FACTS for name in rng.sample(NAMES, 2)]  # each topic for two people
    rng.shuffle(facts)
    out: list[list[NewMessage]] = [[] for _ in range(sessions)]
    questions: list[tuple[str, str]] = []

    def fill(**kw: str) -> str:
        return rng.choice(FILLER).format(**kw)

    for i, (fact, question, name) in enumerate(facts):
        kw = {"name": name, "day": rng.choice(DAYS), "city": rng.choice(CITIES)}
        session = out[i % sessions]
        msg = NewMessage(message_type="user_message", role="user", content="By the way, " + fact.format(**kw) + ".",
                         id=f"message-fact-{i:04d}")
        session.append(msg)
        session.append(NewMessage(message_type="assistant_message", role="assistant", content=rng.choice(REPLIES)))
        questions.append((question.format(**kw), msg.id or ""))
        # Distractors: other people, in other sessions, using words of this fact.
        words = [w for w in terms(fact.format(**kw)) if w != name.lower() and len(w) > 3]
        for _ in range(3):
            other = rng.choice([n for n in NAMES if n != name])
            a, b = rng.sample(words, 2)
            text = rng.choice(DISTRACTORS).format(name=other, a=a, b=b)
            out[rng.randrange(sessions)].append(NewMessage(message_type="user_message", role="user", content=text))
    for session in out:  # filler turns around the facts, mentioning the same people
        for _ in range(rng.randrange(6, 14)):
            kw = {"name": rng.choice(NAMES), "day": rng.choice(DAYS), "city": rng.choice(CITIES)}
            pos = rng.randrange(0, len(session) + 1)
            session[pos:pos] = [
                NewMessage(message_type="user_message", role="user", content=fill(**kw)),
                NewMessage(message_type="assistant_message", role="assistant", content=rng.choice(REPLIES)),
            ]
    return out, questions


async def all_words(store: SQLiteStore, agent_id: str, words: list[str], limit: int) -> list[str]:
    """The baseline: ids of the agent's messages holding every word, by FTS5 bm25 (not a store method:
    the product never searches this way)."""
    match = " AND ".join(f'"{w}"' for w in words)
    sql = (
        "SELECT m.id FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
        "WHERE messages_fts MATCH ? AND m.agent_id = ? ORDER BY messages_fts.rank LIMIT ?"
    )
    rows = await store.database.read(lambda db: db.execute(sql, (match, agent_id, limit)).fetchall())
    return [r[0] for r in rows]


async def run(sizes: Sizes) -> list[Figure]:
    sessions, questions = dataset()
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        store, service = await open_service(Path(tmp) / "quality.db")
        try:
            agent_id = await service.resolve_agent(None)
            for msgs in sessions:
                conv = await service.create_conversation(agent_id)
                await store.import_messages([(conv.id, msgs)])
            hits = {"or": {5: 0, 10: 0}, "and": {5: 0, 10: 0}}
            for question, answer in questions:
                ranked = [r.message_id for r in (await service.search(question, limit=10)).results]
                words = terms(question)
                strict = await all_words(store, agent_id, words, limit=10)
                for name, ids in (("or", ranked), ("and", strict)):
                    for k in (5, 10):
                        hits[name][k] += answer in ids[:k]
        finally:
            await store.close()
    n = len(questions)
    figures = []
    for k in (5, 10):
        ours, base = 100 * hits["or"][k] / n, 100 * hits["and"][k] / n
        figures.append(Figure(
            f"search recall@{k} ({n} natural-language questions)", ours, "%", "reported (beats AND)", ours > base,
            baseline=base, baseline_label="AND of all words",
            details={"questions": n, "example": questions[0][0]},
        ))
    return figures
