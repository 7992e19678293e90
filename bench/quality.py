"""Search quality: recall@5, recall@10 and MRR of `conversation_search` on the recall set
(bench/recall_set.py: twelve agents, 624 questions in five categories), lexical and, when a local
embedding model is installed (the `local` extra), hybrid.

The set goes into a real server database the way an import does (`import_messages` into one
conversation per session of an agent created through the service), and every question is asked
through `ConversationService.search`, scoped to its agent, as the tool asks it. Recall counts the
share of a question's evidence turns in the top k (multi-hop questions have two); MRR is over the
top 10. R@40 is the share within the first 40, the candidates a reranker is given: what it can
lift into a page at most. Hybrid also reports how fast the local model embeds the whole backlog.

Alone: `python -m bench.quality [--db postgresql://postgres@127.0.0.1:5432/postgres] [--model local/…]
[--rerank-model HANDLE [--rerank-timeout S]]` prints the table per category, with each search's
p50/p95 time; with `--db` the set goes into a scratch database created on that server and dropped
afterwards. With `--rerank-model` every mode is measured again reranked (the handle's base URL and
key come from the environment, as for the server; docs/runs.md), with the count of searches the
reranker failed or ran out of time on. `--rerank-model fake` reranks with tests/fake_provider.py
(the share of the query's words a message holds): no model, but the whole path and its added time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mcp_server_conversations.config import Settings
from mcp_server_conversations.service.conversations import ConversationService
from mcp_server_conversations.storage import Store, open_store

from .common import REPO, Figure, Sizes, percentile
from .recall_set import CATEGORIES, SPEAKERS, Question, build, overlap

LOCAL_MODEL = os.environ.get("BENCH_LOCAL_MODEL", "local/wordllama")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEPTH = 10
CANDIDATES = 40  # search/rerank.py DEPTH: each question is asked this deep, and recall counted there too
FAKE_RERANK = "hosted_vllm/fake-rerank"
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
    """Per category (and "all"): recall@5, recall@10, MRR@10, recall@40 and the questions' count;
    under "ms" each search's p50 and p95 time. A page's first ten are the same whether it is asked
    ten or forty deep (the fusion and a reranker see the same candidates either way)."""
    per: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
    times = []
    for q in questions:
        started = time.perf_counter()
        found = await service.search(q.text, agent_id=agent_ids[q.agent], limit=CANDIDATES)
        times.append((time.perf_counter() - started) * 1000)
        ranked = [r.message_id for r in found.results]
        want = set(q.evidence)
        r5 = len(want & set(ranked[:5])) / len(want)
        r10 = len(want & set(ranked[:DEPTH])) / len(want)
        first = next((i for i, m in enumerate(ranked[:DEPTH], start=1) if m in want), None)
        r40 = len(want & set(ranked)) / len(want)
        score = (r5, r10, 1.0 / first if first else 0.0, r40)
        per[q.category].append(score)
        per["all"].append(score)
    out: dict[str, Any] = {
        c: {"r5": _mean(v, 0), "r10": _mean(v, 1), "mrr": _mean(v, 2), "r40": _mean(v, 3), "n": len(v)}
        for c, v in per.items()
    }
    out["ms"] = {"p50": round(percentile(times, 50), 2), "p95": round(percentile(times, 95), 2)}
    return out


class _Fallbacks(logging.Handler):
    """Counts the searches the reranker did not answer (its warnings)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "un-reranked" in record.getMessage()


@contextlib.asynccontextmanager
async def reranking(handle: str | None, budget: float) -> AsyncIterator[tuple[Any, _Fallbacks]]:
    """A Reranker for `handle` (None without one) and its fallbacks' count; `fake`:
    tests/fake_provider.py's, in this process."""
    counter = _Fallbacks()
    if handle is None:
        yield None, counter
        return
    from mcp_server_conversations.gateway import ModelGateway
    from mcp_server_conversations.search.rerank import Reranker

    with contextlib.ExitStack() as stack:
        if handle == "fake":
            sys.path.insert(0, str(REPO / "tests"))
            from fake_provider import FakeProvider

            fake = stack.enter_context(FakeProvider())
            os.environ["HOSTED_VLLM_API_BASE"] = fake.base_url
            handle = FAKE_RERANK
        settings = Settings(rerank_model=handle, rerank_timeout=budget)
        gateway = ModelGateway(settings)
        gateway.open()
        await gateway.load()  # importing litellm is not reranking
        logging.getLogger("mcp_server_conversations.search.rerank").addHandler(counter)
        try:
            yield Reranker(settings, gateway), counter
        finally:
            logging.getLogger("mcp_server_conversations.search.rerank").removeHandler(counter)
            await gateway.close()


def _mean(scores: list[tuple[float, ...]], i: int) -> float:
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


async def measure(
    agents: int,
    db: str | None = None,
    models: tuple[str, ...] = (LOCAL_MODEL,),
    rerank: str | None = None,
    rerank_timeout: float = 2.0,
) -> dict[str, Any]:
    async with scratch_database(db) as location, reranking(rerank, rerank_timeout) as (reranker, fallbacks):
        store = await open_store(location)
        service = ConversationService(store, Settings(db=location))
        try:
            questions, agent_ids, n = await load(store, service, agents)
            out: dict[str, Any] = {
                "questions": len(questions),
                "messages": n,
                "lexical": await evaluate(service, questions, agent_ids),
            }
            services = {"lexical": service}
            for model in models:
                if not local_model_installed(model):
                    continue
                settings = Settings(db=location, embedding_model=model)
                index, rate = await hybrid_index(settings, store, model)
                key = "hybrid" if model == models[0] else f"hybrid {model}"
                services[key] = ConversationService(store, settings, hybrid=index)
                out[key] = await evaluate(services[key], questions, agent_ids)
                out["embed_rate" if key == "hybrid" else f"embed_rate {model}"] = rate
            for key, plain in services.items() if reranker is not None else ():
                before = fallbacks.count
                with_reranker = ConversationService(store, plain.settings, hybrid=plain.hybrid, reranker=reranker)
                out[f"{key} + rerank"] = await evaluate(with_reranker, questions, agent_ids)
                out[f"{key} + rerank"]["unreranked"] = fallbacks.count - before
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
    parser.add_argument("--rerank-model", help="also measure each mode reranked by this handle (`fake`: the fake one)")
    parser.add_argument("--rerank-timeout", type=float, default=2.0, help="the reranker's budget per search (s)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    models = tuple(args.model or ())
    found = asyncio.run(measure(args.agents, args.db, models, args.rerank_model, args.rerank_timeout))
    print(f"{found['questions']} questions, {found['messages']} messages, {'PostgreSQL' if args.db else 'SQLite'}")
    for mode, table in found.items():
        if not isinstance(table, dict):
            continue
        for category in ("all", *CATEGORIES):
            m = table[category]
            print(
                f"{mode:36s} {category:18s} n={m['n']:3d}  R@5 {m['r5']:.3f}  R@10 {m['r10']:.3f}  MRR {m['mrr']:.3f}"
                f"  R@40 {m['r40']:.3f}"
            )
        unreranked = f", {table['unreranked']} searches un-reranked" if "unreranked" in table else ""
        print(f"{mode:36s} search p50 {table['ms']['p50']:.2f} ms  p95 {table['ms']['p95']:.2f} ms{unreranked}")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
