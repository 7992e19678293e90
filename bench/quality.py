"""Search quality: recall@5, recall@10 and MRR of `conversation_search` on the recall set
(bench/recall_set.py: twelve agents, 624 questions in five categories), lexical and, when a local
embedding model is installed (the `local` extra), hybrid.

The set goes into a real server database the way an import does (`import_messages` into one
conversation per session of an agent created through the service), and every question is asked
through `ConversationService.search`, scoped to its agent, as the tool asks it. Recall counts the
share of a question's evidence turns in the top k (multi-hop questions have two); MRR is over the
top 10. Hybrid also reports how fast the local model embeds the whole backlog.

Alone: `python -m bench.quality [--db postgresql://postgres@127.0.0.1:5432/postgres] [--model local/…]`
prints the table per category; with `--db` the set goes into a scratch database created on that
server and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp_server_conversations.config import Settings
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import Store, open_store

from .common import Figure, Sizes
from .recall_set import CATEGORIES, SPEAKERS, Question, build, overlap

LOCAL_MODEL = os.environ.get("BENCH_LOCAL_MODEL", "local/wordllama")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEPTH = 10
TARGETS = {"lexical": 0.70, "hybrid": 0.80}  # recall@10 over all questions


async def load(store: Store, service: ConversationService, agents: int) -> tuple[list[Question], dict, int]:
    """The recall set stored: its questions, each agent's id by index, and how many messages."""
    worlds, questions = build(agents=agents)
    agent_ids, n = {}, 0
    for i, world in enumerate(worlds):
        agent = await service.create_agent(name=f"recall-{i:02d}")
        agent_ids[i] = agent.id
        for msgs in world.messages():
            conv = await service.create_conversation(agent.id)
            n += await store.import_messages([(conv.id, msgs)])
    return questions, agent_ids, n


async def evaluate(service: ConversationService, questions: list[Question], agent_ids: dict) -> dict[str, Any]:
    """Per category (and "all"): recall@5, recall@10, MRR@10, and the questions' count."""
    per: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for q in questions:
        found = await service.search(q.text, agent_id=agent_ids[q.agent], limit=DEPTH)
        ranked = [r.message_id for r in found.results]
        want = set(q.evidence)
        r5 = len(want & set(ranked[:5])) / len(want)
        r10 = len(want & set(ranked[:10])) / len(want)
        first = next((i for i, m in enumerate(ranked, start=1) if m in want), None)
        score = (r5, r10, 1.0 / first if first else 0.0)
        per[q.category].append(score)
        per["all"].append(score)
    return {c: {"r5": _mean(v, 0), "r10": _mean(v, 1), "mrr": _mean(v, 2), "n": len(v)} for c, v in per.items()}


def _mean(scores: list[tuple[float, float, float]], i: int) -> float:
    return round(statistics.fmean(s[i] for s in scores), 3)


def local_model_installed(model: str = LOCAL_MODEL) -> bool:
    from mcp_server_conversations.local.models import check

    try:
        check(model)
    except ValueError:
        return False
    return True


async def hybrid_index(settings: Settings, store: Store, model: str) -> tuple[Any, float]:
    """The embedding index for the local model, its backlog embedded; and the messages/s it took."""
    from mcp_server_conversations.gateway import ModelGateway
    from mcp_server_conversations.search.hybrid import EmbeddingIndex

    index = EmbeddingIndex(settings, store, ModelGateway(settings))
    await index.gateway.embed(model, ["warm up"])  # loading the weights is not embedding
    started = time.perf_counter()
    handled = await index.index_pending()
    return index, handled / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def scratch_database(db: str | None) -> AsyncIterator[str | Path]:
    """Where the set is stored: a temporary SQLite file, or with `db` (a postgresql:// URL of a
    server) a scratch database created on it and dropped afterwards."""
    if not db:
        with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
            yield Path(tmp) / "quality.db"
        return
    import asyncpg

    name = f"bench_quality_{os.getpid()}"
    admin = await asyncpg.connect(db)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name}")
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield db.rsplit("/", 1)[0] + "/" + name
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def measure(agents: int, db: str | None = None, models: tuple[str, ...] = (LOCAL_MODEL,)) -> dict[str, Any]:
    async with scratch_database(db) as location:
        store = await open_store(location)
        service = ConversationService(store, Settings(db=location))
        try:
            questions, agent_ids, n = await load(store, service, agents)
            out: dict[str, Any] = {
                "questions": len(questions),
                "messages": n,
                "lexical": await evaluate(service, questions, agent_ids),
            }
            for model in models:
                if not local_model_installed(model):
                    continue
                settings = Settings(db=location, embedding_model=model)
                index, rate = await hybrid_index(settings, store, model)
                key = "hybrid" if model == models[0] else f"hybrid {model}"
                out[key] = await evaluate(ConversationService(store, settings, hybrid=index), questions, agent_ids)
                out["embed_rate" if key == "hybrid" else f"embed_rate {model}"] = rate
        finally:
            await store.close()
    texts = {m.id: m.content for w in build(agents=agents)[0] for s in w.messages() for m in s if m.id}
    names = {s.lower() for s in SPEAKERS}
    out["overlap"] = round(
        statistics.fmean(overlap(q.text, [texts[e] for e in q.evidence], names) for q in questions), 3
    )
    return out


async def run(sizes: Sizes) -> list[Figure]:
    found = await measure(agents=3 if sizes.quick else 12)
    figures = []
    for mode in ("lexical", "hybrid"):
        if mode not in found:
            continue
        for category in ("all", *CATEGORIES):
            m = found[mode][category]
            overall = category == "all"
            target = TARGETS[mode] if overall else None
            lexical = found["lexical"][category]["r10"]
            figures.append(
                Figure(
                    f"search recall {mode}{'' if mode == 'lexical' else ' (' + LOCAL_MODEL + ')'}: {category} "
                    f"({m['n']} questions)",
                    m["r10"],
                    "",
                    f"R@10 ≥ {target:.2f}" if target else "reported",
                    m["r10"] >= target if target else None,
                    shown=f"R@5 {m['r5']:.3f} · R@10 {m['r10']:.3f} · MRR {m['mrr']:.3f}",
                    shown_baseline="" if mode == "lexical" else f"R@10 {lexical:.3f} lexical",
                    details={**m, "word_overlap_mean": found["overlap"], "messages": found["messages"]},
                )
            )
    if "embed_rate" in found:
        figures.append(
            Figure(
                f"embedding backlog with {LOCAL_MODEL} ({found['messages']} messages, in-process)",
                found["embed_rate"],
                "msg/s",
                "reported",
                None,
                details={"cpus": len(os.sched_getaffinity(0))},
            )
        )
    return figures


def main() -> None:
    """Print the per-category table: `python -m bench.quality [--db postgresql://...] [--model M ...]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help=f"a PostgreSQL server URL (e.g. {PG_ADMIN}): a scratch database on it")
    parser.add_argument("--model", action="append", help="local embedding model(s) for hybrid rows")
    parser.add_argument("--agents", type=int, default=12)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    models = tuple(args.model or ())
    found = asyncio.run(measure(args.agents, args.db, models))
    print(f"{found['questions']} questions, {found['messages']} messages, {'PostgreSQL' if args.db else 'SQLite'}")
    for mode, table in found.items():
        if not isinstance(table, dict):
            continue
        for category in ("all", *CATEGORIES):
            m = table[category]
            print(
                f"{mode:36s} {category:18s} n={m['n']:3d}  R@5 {m['r5']:.3f}  R@10 {m['r10']:.3f}  MRR {m['mrr']:.3f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
