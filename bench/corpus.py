"""A deterministic synthetic corpus for search and storage benchmarks.

Text is English stop words mixed with tens of thousands of pronounceable pseudo-words
drawn from a Zipf distribution, so a handful of words are everywhere and most are rare,
as in real chat logs; 1–3 content-word queries are then selective. Message lengths are
20–400 words (log-normal: most are short, assistant answers run longer).

Speed matters (the 1M-message corpus must build in well under a minute), so tokens are
sampled once into a long stream and each message is a slice of it at a random offset.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

STOP = (
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or had by "
    "but some what there we can out other were all your when up use word how said an each she which do their "
    "time if will way about many then them would like so these her long make thing see him two has look more "
    "day could go come did my no most who over know than call first people may down been now find any new "
    "just also after back only because good well very even our into should much"
).split()
ONSETS = "b c d f g h j k l m n p r s t v w z br ch cl cr dr fl fr gl gr pl pr sc sh sk sl sm sn sp st sw th tr".split()
VOWELS = "a e i o u ai ea ee io oa ou".split()
CODAS = ["", "", "", "n", "r", "s", "l", "m", "nd", "nt", "st", "ck", "rn", "ld"]

STOP_SHARE = 0.45  # share of tokens that are stop words
ZIPF_S = 1.0
POOL_TOKENS = 2_000_000


def make_vocabulary(size: int, rng: random.Random) -> list[str]:
    """`size` distinct pseudo-words of 2–4 syllables, none of them an English stop word."""
    words: list[str] = []
    seen = set(STOP)
    while len(words) < size:
        n = rng.choice((2, 2, 3, 3, 3, 4))
        w = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(n)) + rng.choice(CODAS)
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


@dataclass
class CorpusMessage:
    role: str
    message_type: str
    content: str
    created_at: str


class Corpus:
    """Seeded generator: the same (seed, vocabulary) always gives the same text and queries."""

    def __init__(self, seed: int = 7, vocabulary: int = 40_000, pool_tokens: int = POOL_TOKENS) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.words = make_vocabulary(vocabulary, self.rng)
        content_w = list(itertools.accumulate(1.0 / (r**ZIPF_S) for r in range(1, len(self.words) + 1)))
        stop_w = list(itertools.accumulate(1.0 / (r**ZIPF_S) for r in range(1, len(STOP) + 1)))
        n_stop = int(pool_tokens * STOP_SHARE)
        tokens = self.rng.choices(self.words, cum_weights=content_w, k=pool_tokens - n_stop)
        tokens += self.rng.choices(STOP, cum_weights=stop_w, k=n_stop)
        self.rng.shuffle(tokens)
        self.pool = tokens

    def length(self, role: str) -> int:
        """Words in a message: user turns are mostly short, assistant turns longer; 20–400."""
        mu = 3.6 if role == "user" else 4.6  # medians of about 37 and 100 words
        return max(20, min(400, int(self.rng.lognormvariate(mu, 0.6))))

    def text(self, words: int) -> str:
        start = int(self.rng.random() * (len(self.pool) - words))
        return " ".join(self.pool[start : start + words])

    def conversation(self, n: int, start: datetime) -> Iterator[CorpusMessage]:
        """`n` messages: user and assistant turns, with a tool return now and then."""
        day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
        secs = (start - day0).seconds
        days: dict[int, str] = {}
        rand = self.rng.random
        for i in range(n):
            if i % 2 == 0:
                role, mtype = "user", "user_message"
            elif rand() < 0.08:
                role, mtype = "tool", "tool_return_message"
            else:
                role, mtype = "assistant", "assistant_message"
            secs += 5 + int(rand() * 595)
            d, rest = divmod(secs, 86400)
            if d not in days:
                days[d] = (day0 + timedelta(days=d)).strftime("%Y-%m-%d")
            h, rest = divmod(rest, 3600)
            stamp = f"{days[d]}T{h:02d}:{rest // 60:02d}:{rest % 60:02d}.{i % 1000:03d}000Z"
            yield CorpusMessage(role, mtype, self.text(self.length(role)), stamp)

    def conversations(self, total: int, count: int, days: int = 365) -> Iterator[list[CorpusMessage]]:
        """`total` messages spread evenly over `count` conversations started over `days` days."""
        base = datetime(2025, 1, 1, tzinfo=UTC)
        per, extra = divmod(total, count)
        for c in range(count):
            start = base + timedelta(seconds=self.rng.randrange(0, days * 86400))
            yield list(self.conversation(per + (1 if c < extra else 0), start))

    def queries(self, n: int, seed: int | None = None) -> list[str]:
        """`n` queries of 1–3 content words, some wrapped in question filler (stop words).

        Words are drawn uniformly over the vocabulary's ranks past the first 50 — people
        search for the distinctive words they remember, not the commonest ones."""
        rng = random.Random(self.seed * 1000 + 1 if seed is None else seed)
        out = []
        for _ in range(n):
            k = rng.choice((1, 2, 2, 3))
            words = [self.words[rng.randrange(50, len(self.words))] for _ in range(k)]
            q = " ".join(words)
            if rng.random() < 0.3:
                q = f"what did we say about {q}?"
            out.append(q)
        return out

    def common_queries(self, n: int) -> list[str]:
        """Hard queries: 1–2 of the 50 commonest content words (most messages match)."""
        rng = random.Random(self.seed * 1000 + 2)
        return [" ".join(self.words[rng.randrange(0, 50)] for _ in range(rng.choice((1, 2)))) for _ in range(n)]


def expected_df(rank: int, vocabulary: int, words_per_message: float = 80.0) -> float:
    """Rough share of messages containing the content word of this rank (for the README)."""
    h = sum(1.0 / r for r in range(1, vocabulary + 1))
    p = (1 - STOP_SHARE) / (rank * h)
    return 1 - math.exp(-p * words_per_message)
