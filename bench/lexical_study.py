"""What lexical ranking changes would do on the recall set, measured outside the server: BM25 over
the same porter tokens as the server's FTS5 index, computed here so that term statistics, date
understanding and neighbouring turns can be varied. Not part of `run.py`; for deciding what the
storage layer's ranking should do. Run: `python -m bench.lexical_study`.
"""

from __future__ import annotations

import math
import re
import sqlite3
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mcp_server_conversations.search.query import terms

from .recall_set import CATEGORIES, MONTHS, Question, build

K1, B = 1.2, 0.75


@dataclass
class Doc:
    id: str
    agent: int
    when: datetime
    tokens: Counter
    length: int
    prev: int | None = None  # index of the turn before, in the same session
    next: int | None = None


@dataclass
class Corpus:
    docs: list[Doc] = field(default_factory=list)
    by_agent: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))


def tokenize(texts: list[str]) -> list[list[str]]:
    """Porter tokens of each text, as the server's index makes them."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61 remove_diacritics 2')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    db.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", [(i + 1, t) for i, t in enumerate(texts)])
    out: list[list[str]] = [[] for _ in texts]
    for term, doc, _col, _offset in db.execute("SELECT term, doc, col, offset FROM v ORDER BY doc, offset"):
        out[doc - 1].append(term)
    return out


def corpus(agents: int = 12) -> tuple[Corpus, list[Question]]:
    worlds, questions = build(agents=agents)
    c = Corpus()
    rows = []
    for agent, world in enumerate(worlds):
        for session in world.messages():
            first = len(rows)
            for k, m in enumerate(session):
                when = datetime.strptime((m.created_at or "")[:19], "%Y-%m-%dT%H:%M:%S")
                rows.append(
                    (
                        m.id or f"filler-{len(rows)}",
                        agent,
                        when,
                        m.content or "",
                        first + k - 1 if k else None,
                        first + k + 1 if k + 1 < len(session) else None,
                    )
                )
    for (mid, agent, when, _text, prev, nxt), tokens in zip(rows, tokenize([r[3] for r in rows]), strict=True):
        c.by_agent[agent].append(len(c.docs))
        c.docs.append(Doc(mid, agent, when, Counter(tokens), len(tokens), prev, nxt))
    return c, questions


def bm25(
    c: Corpus,
    docs: list[int],
    query: list[str],
    df: Counter,
    n: int,
    avg: float,
    weight: Callable[[str], float],
    plus_one: bool = False,
) -> dict[int, float]:
    """FTS5's bm25 (idf floored at 1e-6, so a term in over half the documents counts for nothing),
    or with `plus_one` Lucene's idf, ln(1 + (N - df + 0.5) / (df + 0.5)), which stays positive."""
    scores: dict[int, float] = {}
    for term in query:
        if not df[term]:
            continue
        ratio = (n - df[term] + 0.5) / (df[term] + 0.5)
        idf = (math.log(1 + ratio) if plus_one else max(math.log(ratio), 1e-6)) * weight(term)
        for i in docs:
            tf = c.docs[i].tokens.get(term)
            if tf:
                norm = tf * (K1 + 1) / (tf + K1 * (1 - B + B * c.docs[i].length / avg))
                scores[i] = scores.get(i, 0.0) + idf * norm
    return scores


_WHEN = re.compile(rf"\b(?:(in the week of|on|in)\s+)(?:(\d{{1,2}})\s+)?({'|'.join(MONTHS)})\s+(\d{{4}})")


def window(question: str) -> tuple[datetime, datetime] | None:
    """The days a question's date phrase names, widened by two weeks after (a turn tells an event
    up to "a couple of weeks" later)."""
    m = _WHEN.search(question)
    if not m:
        return None
    how, day, month, year = m.groups()
    month_no = MONTHS.index(month) + 1
    if day:
        start = datetime(int(year), month_no, int(day))
        end = start + timedelta(days=7 if how == "in the week of" else 1)
    else:
        start = datetime(int(year), month_no, 1)
        end = datetime(int(year) + month_no // 12, month_no % 12 + 1, 1)
    return start, end + timedelta(days=15)


def rank(
    c: Corpus,
    q: Question,
    *,
    scoped: bool,
    common: float | None,
    dates: str | None,
    neighbours: float,
    stats: dict,
    plus_one: bool = False,
) -> list[str]:
    docs = c.by_agent[q.agent]
    df, n, avg = stats["agent" if scoped else "all"][q.agent if scoped else 0]
    query = [t for toks in tokenize(terms(q.text)) for t in toks]
    weight = (lambda t: 0.1 if df[t] / n > common else 1.0) if common else (lambda t: 1.0)
    scores = bm25(c, docs, query, df, n, avg, weight, plus_one)
    if neighbours:  # only what the rarer words matched passes to the next turn, never a name's share
        base = bm25(c, docs, query, df, n, avg, lambda t: 0.0 if df[t] / n > (common or 0.3) else 1.0, plus_one)
        for i, s in base.items():
            nxt = c.docs[i].next
            if nxt is not None:
                scores[nxt] = scores.get(nxt, 0.0) + neighbours * s
    span = window(q.text) if dates else None
    if span:
        inside = {i for i in docs if span[0] <= c.docs[i].when < span[1]}
        if dates == "filter" and any(i in inside for i in scores):
            scores = {i: s for i, s in scores.items() if i in inside}
        elif dates == "boost":
            scores = {i: s * (2.0 if i in inside else 1.0) for i, s in scores.items()}
    order = sorted(scores, key=lambda i: (-scores[i], -c.docs[i].when.timestamp()))
    return [c.docs[i].id for i in order[:10]]


def statistics_of(c: Corpus) -> dict:
    def of(idx: list[int]) -> tuple[Counter, int, float]:
        df: Counter = Counter()
        for i in idx:
            df.update(c.docs[i].tokens.keys())
        return df, len(idx), statistics.fmean(c.docs[i].length for i in idx)

    return {"all": {0: of(list(range(len(c.docs))))}, "agent": {a: of(idx) for a, idx in c.by_agent.items()}}


VARIANTS = {
    "global statistics (today)": dict(scoped=False, common=None, dates=None, neighbours=0.0),
    "statistics scoped to the agent": dict(scoped=True, common=None, dates=None, neighbours=0.0),
    "scoped, idf ln(1 + ...)": dict(scoped=True, common=None, dates=None, neighbours=0.0, plus_one=True),
    "scoped, ln(1 + ...), >30% of turns x0.1": dict(scoped=True, common=0.3, dates=None, neighbours=0.0, plus_one=True),
    "global + dates as a boost (x2 inside)": dict(scoped=False, common=None, dates="boost", neighbours=0.0),
    "global + dates as a filter": dict(scoped=False, common=None, dates="filter", neighbours=0.0),
    "scoped ln(1+) + dates filter": dict(scoped=True, common=None, dates="filter", neighbours=0.0, plus_one=True),
    "global + dates filter + next turn 0.5": dict(scoped=False, common=None, dates="filter", neighbours=0.5),
    "scoped ln(1+) + dates filter + next turn 0.5": dict(
        scoped=True, common=None, dates="filter", neighbours=0.5, plus_one=True
    ),
}


def main() -> None:
    c, questions = corpus()
    stats = statistics_of(c)
    cats = ("all", *CATEGORIES)
    print(f"{'variant':46s} " + " ".join(f"{x[:11]:>11s}" for x in cats))
    for name, kw in VARIANTS.items():
        per: dict[str, list[float]] = defaultdict(list)
        for q in questions:
            top = rank(c, q, stats=stats, **kw)
            r10 = len(set(q.evidence) & set(top)) / len(q.evidence)
            per[q.category].append(r10)
            per["all"].append(r10)
        print(f"{name:46s} " + " ".join(f"{statistics.fmean(per[x]):11.3f}" for x in cats))


if __name__ == "__main__":
    main()
