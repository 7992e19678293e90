"""The recall set: seeded, deterministic multi-session conversations between two speakers, with
questions whose evidence turns are known (vocabulary in bench/recall_topics.py).

Each agent holds one pair of speakers talking over about twenty sessions a few days apart; every
turn starts with its speaker's name, so a name is in half of the agent's messages. Categories:

- single-hop: a fact stated once, asked in other words (sometimes the fact is the reply to the
  other speaker's question, which holds the words);
- speaker: both speakers state the same kind of fact; only the name tells which one is asked;
- temporal-absolute: an event repeated in three sessions of different months; the question
  names the month or the day of the session;
- temporal-relative: the same, stated as "yesterday", "last week"…; the question names the day
  it happened (the session date minus the phrase);
- multi-hop: two turns in different sessions about a third person; both are the evidence.

Decoy turns share the question's words; filler turns and replies share the names.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from mcp_server_conversations.search.query import terms
from mcp_server_conversations.storage import NewMessage

from .recall_topics import ABSOLUTE, EVENTS, FACTS, FILLER, HOPS, MONTHS, RELATIVE, REPLIES

SPEAKERS = (
    "Maria",
    "Jonas",
    "Priya",
    "Tomasz",
    "Aisha",
    "Mateo",
    "Ingrid",
    "Kwame",
    "Yuki",
    "Dmitri",
    "Lena",
    "Rafael",
    "Chloe",
    "Omar",
    "Sofia",
    "Henrik",
    "Nadia",
    "Luca",
    "Amara",
    "Felix",
    "Zara",
    "Hugo",
    "Elif",
    "Bruno",
)
THIRD = ("Pat", "Robin", "Sasha", "Kim", "Alex", "Jules", "Morgan", "Noor", "Rene", "Toni", "Dana", "Eli")
CATEGORIES = ("single-hop", "speaker", "temporal-absolute", "temporal-relative", "multi-hop")
SESSIONS = 20
TURNS = 22  # turns per session, filler included
PAIRED = 0.3  # share of questions asked in the words written for the statement's wording


@dataclass
class Question:
    text: str
    category: str
    agent: int
    evidence: tuple[str, ...]  # message ids; recall counts the share of them found


@dataclass
class Session:
    when: datetime
    blocks: list[list[tuple[str, str, str | None]]] = field(default_factory=list)  # (speaker, text, id)


@dataclass
class World:
    """One agent's conversations: a pair of speakers and their sessions."""

    speakers: tuple[str, str]
    sessions: list[Session]

    def messages(self) -> list[list[NewMessage]]:
        """Each session's turns, in order, with timestamps a minute or two apart."""
        out = []
        for s in self.sessions:
            t, msgs = s.when, []
            for block in s.blocks:
                for speaker, text, mid in block:
                    user = speaker == self.speakers[0]
                    msgs.append(
                        NewMessage(
                            message_type="user_message" if user else "assistant_message",
                            role="user" if user else "assistant",
                            content=f"{speaker}: {text}",
                            id=mid,
                            created_at=t.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
                        )
                    )
                    t += timedelta(seconds=40 + (len(text) * 7) % 120)
            out.append(msgs)
        return out


def day(d: date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


class _Builder:
    def __init__(self, rng: random.Random, agent: int, speakers: tuple[str, str]) -> None:
        self.rng, self.agent, self.speakers = rng, agent, speakers
        start = datetime(2022, 1, 3, 0, 0) + timedelta(days=rng.randrange(0, 900))
        self.sessions: list[Session] = []
        for _ in range(SESSIONS):
            self.sessions.append(Session(start.replace(hour=rng.randrange(8, 22), minute=rng.randrange(60))))
            start += timedelta(days=rng.randrange(4, 17))
        self.questions: list[Question] = []
        self.n = 0

    def other(self, speaker: str) -> str:
        return self.speakers[1] if speaker == self.speakers[0] else self.speakers[0]

    def turn(self, session: int, speaker: str, text: str, *, prompt: str = "") -> str:
        """Add a stated turn (with the other speaker's prompt before it or a reply after it); its id."""
        self.n += 1
        mid = f"message-recall-{self.agent:02d}-{self.n:04d}"
        other = self.other(speaker)
        block = [(speaker, text, mid)]
        if prompt:
            block.insert(0, (other, prompt, None))
        else:
            block.append((other, self.rng.choice(REPLIES).format(B=speaker), None))
        self.sessions[session].blocks.append(block)
        return mid

    def decoys(self, texts: tuple[str, ...]) -> None:
        for text in texts:
            s = self.rng.randrange(SESSIONS)
            self.sessions[s].blocks.append([(self.rng.choice(self.speakers), text, None)])

    def ask(self, category: str, text: str, *evidence: str) -> None:
        self.questions.append(Question(text, category, self.agent, tuple(evidence)))

    def asking(self, family, said: int) -> str:
        """Mostly the question written for the wording that was said (it shares a word with it),
        sometimes any of them (which may share none)."""
        return family.ask[said] if self.rng.random() < PAIRED else self.rng.choice(family.ask)

    def fact(self, family, speaker: str, x: str) -> tuple[str, int]:
        said = self.rng.randrange(len(family.say))
        text = family.say[said].format(x=x)
        return self.turn(self.rng.randrange(SESSIONS), speaker, text, prompt=family.prompt), said

    def single(self, family) -> None:
        speaker = self.rng.choice(self.speakers)
        mid, said = self.fact(family, speaker, self.rng.choice(family.values))
        self.ask("single-hop", self.asking(family, said).format(S=speaker), mid)
        self.decoys(family.decoys)

    def both(self, family) -> None:
        a, b = self.rng.sample(family.values, 2)
        stated = {speaker: self.fact(family, speaker, x) for speaker, x in zip(self.speakers, (a, b), strict=True)}
        speaker = self.rng.choice(self.speakers)
        mid, said = stated[speaker]
        self.ask("speaker", self.asking(family, said).format(S=speaker), mid)
        self.decoys(family.decoys)

    def event(self, family, relative: bool) -> None:
        """Three occurrences in sessions of three different months; two of them are asked about."""
        speaker = self.rng.choice(self.speakers)
        by_month: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(self.sessions):
            by_month.setdefault((s.when.year, s.when.month), []).append(i)
        months = self.rng.sample(sorted(by_month), 3)
        values = self.rng.sample(family.values, 3)
        asked = self.rng.sample(range(3), 2)
        for k, (month, x) in enumerate(zip(months, values, strict=True)):
            i = self.rng.choice(by_month[month])
            phrase, back = self.rng.choice(RELATIVE if relative else ABSOLUTE)
            said = self.rng.randrange(len(family.say))
            text = family.say[said].format(x=x, t=phrase)
            text = text[0].upper() + text[1:]
            mid = self.turn(i, speaker, text)
            if k not in asked:
                continue
            happened = self.sessions[i].when.date() - timedelta(days=back)
            if relative and back >= 7:
                when = f"in the week of {day(happened - timedelta(days=happened.weekday()))}"
            elif relative or self.rng.random() < 0.5:
                when = f"on {day(happened)}"
            else:
                when = f"in {MONTHS[happened.month - 1]} {happened.year}"
            question = self.asking(family, said).format(S=speaker, when=when)
            self.ask("temporal-relative" if relative else "temporal-absolute", question, mid)
        self.decoys(family.decoys)

    def hop(self, family, a: str, p: str) -> None:
        speaker = self.rng.choice(self.speakers)
        first, second = sorted(self.rng.sample(range(SESSIONS), 2))
        x = self.rng.choice(family.values)
        one = self.turn(first, speaker, self.rng.choice(family.first).format(a=a, p=p))
        two = self.turn(second, speaker, self.rng.choice(family.second).format(x=x, p=p))
        self.ask("multi-hop", self.rng.choice(family.ask).format(S=speaker, a=a), one, two)

    def fill(self) -> None:
        for s in self.sessions:
            s.blocks.insert(0, [(self.rng.choice(self.speakers), self.rng.choice(FILLER[:2]), None)])
            while sum(len(b) for b in s.blocks) < TURNS:
                speaker = self.rng.choice(self.speakers)
                text = self.rng.choice(FILLER)
                if self.rng.random() < 0.5:
                    block = [
                        (speaker, text, None),
                        (self.other(speaker), self.rng.choice(REPLIES).format(B=speaker), None),
                    ]
                else:
                    block = [(speaker, text, None)]
                s.blocks.insert(self.rng.randrange(1, len(s.blocks) + 1), block)
            head, rest = s.blocks[:1], s.blocks[1:]
            self.rng.shuffle(rest)
            s.blocks = head + rest


def build(seed: int = 18, agents: int = 12) -> tuple[list[World], list[Question]]:
    """`agents` worlds and their questions (about 52 per agent), none sharing more than half of
    its content words with an evidence turn."""
    worlds, questions = [], []
    for agent in range(agents):
        rng = random.Random(seed * 1000 + agent)
        speakers = (SPEAKERS[2 * agent % len(SPEAKERS)], SPEAKERS[(2 * agent + 1) % len(SPEAKERS)])
        b = _Builder(rng, agent, speakers)
        facts = rng.sample(FACTS, len(FACTS))
        for family in facts[:12]:
            b.single(family)
        for family in facts[12:20]:
            b.both(family)
        events = rng.sample(EVENTS, len(EVENTS))
        for k, family in enumerate(events):
            b.event(family, relative=k % 2 == 1)
        people = rng.sample(THIRD, 2 * len(HOPS))
        for family in HOPS:
            for a in rng.sample(family.attrs, 2):
                b.hop(family, a, people.pop())
        b.fill()
        worlds.append(World(speakers, b.sessions))
        said = {mid: text for s in b.sessions for block in s.blocks for _, text, mid in block if mid}
        names = {n.lower() for n in SPEAKERS}
        # a value can repeat a question's word ("a Bauhaus exhibition"): such a question is left out
        questions += [q for q in b.questions if overlap(q.text, [said[e] for e in q.evidence], names) <= 0.5]
    return worlds, questions


_SUFFIX = re.compile(r"(ing|ed|es|s|e|y)$")
_DATES = {m.lower() for m in MONTHS} | {"week", "day"}


def stem(word: str) -> str:
    return _SUFFIX.sub("", word) if len(word) > 4 else word


def overlap(question: str, evidence: list[str], names: set[str]) -> float:
    """The largest share of the question's content words (names, dates and numbers left out) that
    one of its evidence turns holds, in some word form."""
    q = {stem(w) for w in terms(question) if w not in names and w not in _DATES and not w.isdigit()}
    if not q:
        return 0.0
    return max(len(q & {stem(w) for w in terms(text)}) / len(q) for text in evidence)
