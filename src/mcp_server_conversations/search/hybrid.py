"""Hybrid search: message embeddings kept current in the background, vector ranking, and its
fusion with the full-text ranking (fusion.py).

Imported only when an embedding model is configured (app.py), so a server without one never
loads numpy, and never litellm for search.

- Indexing never sits on a write path: a background task polls for searchable messages that have
  no vector yet (a rowid cursor makes each poll an index range scan, and polls happen only after
  this connection wrote something), embeds them in batches through the gateway and stores them,
  several batches in flight at once. A backlog (the flag turned on over an existing database)
  drains the same way at start. Each batch is claimed in the store first, so processes sharing
  one database (replicas) split the work and embed each message once.
- Vector ranking is exact cosine similarity, centred on the agent's mean vector once it has
  enough of them (fusion.py), over an agent's vectors held as one normalized
  float32 matrix per agent in memory (sqlite-vec cannot load here: this Python's sqlite3 has no
  enable_load_extension). The indexer appends what it embeds to a cached matrix; deletions are
  caught when a candidate no longer exists (the matrix is then reloaded), vectors stored by
  another process when the store's `vector_stamp` for the agent changes (reloaded too). Scope filters come from
  the same SQL as full-text search (storage/search.py `message_filters`).
- Fusion is score-aware (fusion.py); the embedded query leaves dates out. If embedding the query
  fails, the search answers from full-text alone and logs a warning: search never fails because
  of embeddings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import ProviderError
from ..gateway import ModelGateway
from ..local.models import is_local
from ..models import SearchResult
from ..storage import PendingMessage, Store
from .fusion import CENTER_AT, centre, embedding_query, fuse, lexical_weight, similarities

log = logging.getLogger("mcp_server_conversations.search.hybrid")

CANDIDATES = 50  # depth of each ranking fed to the fusion
BATCH = 64  # messages per embedding request
MAX_EMBED_CHARS = 8000  # about 2,000 tokens: within every common embedding model's input limit
OVERSAMPLE = 10  # a filtered search first checks the nearest OVERSAMPLE x k rows against its scope
THREAD_AT = 1 << 20  # matrix elements above which scoring runs in a worker thread (~1k x 1024 floats)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.argsort(-scores[part], kind="stable")]
    return np.argsort(-scores, kind="stable")


def normalized(vector: list[float]) -> np.ndarray | None:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 and np.isfinite(norm) else None


@dataclass
class _Matrix:
    """An agent's vectors of one dimension: rowids ascending, rows L2-normalized; appends are
    gathered and stacked on the next read."""

    rowids: np.ndarray
    vectors: np.ndarray
    extra_rowids: list[int] = field(default_factory=list)
    extra_vectors: list[np.ndarray] = field(default_factory=list)
    total: np.ndarray = field(init=False)  # the rows' sum (float64), for centring
    centred: tuple[np.ndarray, np.ndarray] | None = None  # fusion.centre's answer for these rows

    def __post_init__(self) -> None:
        self.total = self.vectors.sum(axis=0, dtype=np.float64)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def last_rowid(self) -> int:
        if self.extra_rowids:
            return self.extra_rowids[-1]
        return int(self.rowids[-1]) if len(self.rowids) else 0

    def settle(self) -> None:
        if self.extra_rowids:
            self.rowids = np.concatenate([self.rowids, np.asarray(self.extra_rowids, dtype=np.int64)])
            extra = np.stack(self.extra_vectors)
            self.vectors = np.vstack([self.vectors, extra])
            self.total = self.total + extra.sum(axis=0, dtype=np.float64)
            self.centred = None
            self.extra_rowids, self.extra_vectors = [], []


class EmbeddingIndex:
    """The background indexer and the hybrid ranking for one store and one embedding model."""

    start_delay = 1.0  # seconds after start before the first pass: `initialize` is answered first
    poll = 0.5  # seconds between checks for new messages
    max_backoff = 60.0  # seconds between attempts while the provider keeps failing
    sweep_every = 600.0  # seconds between full re-scans (a deleted rowid can be reused below the cursor)
    cooldown = 15.0  # seconds searches skip the vector side after embedding a query failed
    query_timeout = 15.0  # seconds a search waits for its query's embedding
    batch_timeout = 120.0  # seconds the indexer waits for one batch
    in_flight = 4  # batches embedding at once (a remote provider answers several requests in parallel)

    def __init__(self, settings: Settings, store: Store, gateway: ModelGateway) -> None:
        if not settings.embedding_model:
            raise ValueError("EmbeddingIndex needs settings.embedding_model")
        self.settings = settings
        self.model: str = settings.embedding_model
        self.store = store
        self.gateway = gateway
        self._cursor = 0  # every searchable message at or below this rowid has been handled
        self._cache: dict[str, _Matrix] = {}
        self._versions: dict[str, int] = {}  # bumped per agent on each write, so a slow load never caches stale rows
        self._stamps: dict[str, int] = {}  # per agent: the store's vector_stamp when its matrix was loaded
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._embedding: dict[str, asyncio.Future[np.ndarray | None]] = {}  # queries being embedded now
        self._down_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive failed indexing attempts (0 when healthy)
        if is_local(self.model):  # one batch computes while the next waits: a local model uses the cores alone
            self.in_flight = 2

    # -- lifecycle --

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="embedding-indexer")

    async def stop(self) -> None:
        """Cancel the indexer (a batch in flight is rolled back and embedded again next start)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await self._task
                except Exception:  # it died on its own earlier: shutting down must still succeed
                    log.warning("the embedding indexer had stopped with an error", exc_info=True)
            self._task = None

    async def _run(self) -> None:
        """Embed new messages shortly after they are written, forever; back off while the provider fails."""
        await asyncio.sleep(self.start_delay)
        seen: int | None = None
        swept_at, swept_changes = time.monotonic(), -1
        while True:
            changes = self.store.data_changes()
            now = time.monotonic()
            if now - swept_at >= self.sweep_every and changes != swept_changes:
                self._cursor, swept_at, swept_changes = 0, now, changes
                seen = None
            if changes != seen:
                try:
                    await self.index_pending()
                except Exception as e:  # the provider is down or misconfigured: retry later, never crash
                    self.failures += 1
                    if self.failures == 1 or self.failures % 20 == 0:
                        log.warning(
                            "embedding messages with %s failed (%s attempt(s)): %s",
                            self.model,
                            self.failures,
                            getattr(e, "message", None) or repr(e),
                        )
                    await asyncio.sleep(min(self.max_backoff, self.poll * 2 ** min(self.failures, 16)))
                    continue
                if self.failures:
                    log.warning("embedding messages with %s works again", self.model)
                    self.failures = 0
                seen = changes
            await asyncio.sleep(self.poll)

    # -- indexing --

    async def index_pending(self) -> int:
        """Embed and store every searchable message that has no vector yet; how many were handled.

        Pipelined: up to `in_flight` batches are read and embedding at once while finished ones are
        saved in order, so the provider (or the local model's thread) never waits for the database,
        and the cursor only passes messages whose vectors are stored."""
        handled, cursor, exhausted = 0, self._cursor, False
        flight: deque[tuple[list[PendingMessage], asyncio.Future[list[np.ndarray | None]]]] = deque()
        try:
            while True:
                while not exhausted and len(flight) < self.in_flight:
                    # Claimed: another process indexing the same database skips these (and we skip
                    # theirs, and our own still in flight), so each message is embedded once.
                    batch = await self.store.claim_embedding_work(self.model, after=cursor, limit=BATCH)
                    if not batch:
                        exhausted = True
                        break
                    cursor = max(cursor, batch[-1].rowid)
                    flight.append((batch, asyncio.ensure_future(self._embed_messages(batch))))
                if not flight:
                    return handled
                batch, embedding = flight.popleft()
                try:
                    vectors = await embedding
                    await self.store.save_embeddings(
                        self.model,
                        [
                            (m.id, 0 if v is None else len(v), b"" if v is None else v.tobytes())
                            for m, v in zip(batch, vectors, strict=True)
                        ],
                    )
                finally:
                    await self.store.release_embedding_work([m.rowid for m in batch])
                self._remember(batch, vectors)
                self._cursor = batch[-1].rowid
                handled += len(batch)
        finally:  # a failed or cancelled pass drops the batches behind it: the next pass embeds them again
            for _, embedding in flight:
                embedding.cancel()
            if flight:
                await asyncio.gather(*(embedding for _, embedding in flight), return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self.store.release_embedding_work([m.rowid for b, _ in flight for m in b])

    async def _embed_messages(self, batch: list[PendingMessage]) -> list[np.ndarray | None]:
        """Vectors for a batch (None: nothing to embed, or the provider refused that text). A 400
        on a batch is retried text by text so one bad message cannot block the rest forever."""
        texts = [m.text[:MAX_EMBED_CHARS].strip() for m in batch]
        todo = [i for i, t in enumerate(texts) if t]
        out: list[np.ndarray | None] = [None] * len(batch)
        if not todo:
            return out
        try:
            within = min(self.batch_timeout, self.settings.model_timeout)
            found = await self.gateway.embed(self.model, [texts[i] for i in todo], within=within)
            for i, vector in zip(todo, found, strict=True):
                out[i] = normalized(vector)
            return out
        except ProviderError as e:
            if e.status_code != 400:
                raise
            if len(todo) == 1:
                log.warning("%s refused to embed message %s: %s", self.model, batch[todo[0]].id, e.message)
                return out
        for i in todo:
            out[i] = (await self._embed_messages([batch[i]]))[0]
        return out

    def _remember(self, batch: list[PendingMessage], vectors: list[np.ndarray | None]) -> None:
        """Add fresh vectors to cached matrices (or drop a matrix they cannot simply extend)."""
        for m, v in zip(batch, vectors, strict=True):
            self._versions[m.agent_id] = self._versions.get(m.agent_id, 0) + 1
            cached = self._cache.get(m.agent_id)
            if v is None or cached is None:
                continue
            if len(v) != cached.dim or m.rowid <= cached.last_rowid:
                del self._cache[m.agent_id]  # a reused rowid or another model's shape: reload when next needed
                continue
            cached.extra_rowids.append(m.rowid)
            cached.extra_vectors.append(v)

    # -- ranking --

    async def search(
        self,
        *,
        query: str,
        terms: list[str],
        agent_id: str,
        roles: list[str] | None,
        start: str | None,
        end: str | None,
        conversation_id: str | None,
        limit: int,
    ) -> list[SearchResult]:
        """Full-text and vector rankings fused; full-text alone if the query cannot be embedded."""
        depth = max(limit, CANDIDATES)
        scope: dict[str, Any] = {
            "agent_id": agent_id,
            "roles": roles,
            "start": start,
            "end": end,
            "conversation_id": conversation_id,
        }
        query_vector = asyncio.ensure_future(self._query_vector(embedding_query(query)))
        try:
            full_text = await self.store.search(terms=terms, limit=depth, **scope)
        except BaseException:
            query_vector.cancel()
            raise
        try:
            q = await query_vector
            vector = [] if q is None else await self._rank(q, depth, **scope)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._down_until = time.monotonic() + self.cooldown
            log.warning(
                "hybrid search fell back to full-text only for %.0f s: the vector side (%s) failed: %s",
                self.cooldown,
                self.model,
                getattr(e, "message", None) or repr(e),
            )
            return full_text[:limit]
        if not vector:
            return full_text[:limit]
        return fuse(full_text, vector, limit, lexical_weight(self.model))

    async def _query_vector(self, query: str) -> np.ndarray | None:
        """The query's normalized vector (recent ones are remembered, and searches asking for the
        same query at once share one request); None while in cooldown."""
        text = query[:MAX_EMBED_CHARS].strip()
        cached = self._queries.get(text)
        if cached is not None:
            self._queries.move_to_end(text)
            return cached
        if time.monotonic() < self._down_until:
            return None
        pending = self._embedding.get(text)
        if pending is None:
            pending = self._embedding[text] = asyncio.ensure_future(self._embed_query(text))
            pending.add_done_callback(lambda done: self._query_done(text, done))
        return await asyncio.shield(pending)

    def _query_done(self, text: str, done: asyncio.Future[np.ndarray | None]) -> None:
        self._embedding.pop(text, None)
        if not done.cancelled():
            done.exception()  # taken here too: every search that asked may have been cancelled since

    async def _embed_query(self, text: str) -> np.ndarray | None:
        timeout = min(self.query_timeout, self.settings.model_timeout)
        vector = normalized((await self.gateway.embed(self.model, [text], within=timeout))[0])
        if vector is not None:
            self._queries[text] = vector
            if len(self._queries) > 256:
                self._queries.popitem(last=False)
        return vector

    async def _rank(self, q: np.ndarray, k: int, *, agent_id: str, **filters: Any) -> list[SearchResult]:
        """The agent's k messages nearest to `q` within the search's scope, nearest first.

        With filters, the nearest OVERSAMPLE×k rows are checked against the scope first: if k of
        them are inside, they are exactly the k nearest inside (every row left out is farther).
        Only a narrow scope falls through to listing the scope's rowids, which is then short."""
        scope = {"agent_id": agent_id, **filters} if any(filters.values()) else None
        for _ in range(2):
            matrix = await self._matrix(agent_id, len(q))
            if matrix is None:
                return []
            big = matrix.vectors.size > THREAD_AT  # numpy releases the GIL: keep the event loop free
            if len(matrix.vectors) >= CENTER_AT and matrix.centred is None:
                if big:
                    matrix.centred = await asyncio.to_thread(centre, matrix.vectors, matrix.total)
                else:
                    matrix.centred = centre(matrix.vectors, matrix.total)
            centred = matrix.centred if len(matrix.vectors) >= CENTER_AT else None
            if big:
                sims = await asyncio.to_thread(similarities, matrix.vectors, q, centred)
            else:
                sims = similarities(matrix.vectors, q, centred)
            best = top_k(sims, k if scope is None else OVERSAMPLE * k)
            rowids = [int(r) for r in matrix.rowids[best]]
            similarity = dict(zip(rowids, sims[best].tolist(), strict=True))
            present = await self.store.present_rowids(rowids, self.model, scope)
            if scope is not None and len(present) < k and len(best) < len(sims):
                allowed = np.asarray(await self.store.scoped_rowids(**scope), dtype=np.int64)
                rows = np.flatnonzero(np.isin(matrix.rowids, allowed, assume_unique=True))
                best = rows[top_k(sims[rows], k)]
                rowids = [int(r) for r in matrix.rowids[best]]
                similarity = dict(zip(rowids, sims[best].tolist(), strict=True))
                present = await self.store.present_rowids(rowids, self.model)
            if scope is not None or len(present) == len(rowids):
                break
            self._cache.pop(agent_id, None)  # rows were deleted since the matrix was loaded: reload once
        nearest = [r for r in rowids if r in present][:k]
        hits = await self.store.vector_hits(nearest)
        return [hits[r].model_copy(update={"score": round(similarity[r], 6)}) for r in nearest if r in hits]

    async def _matrix(self, agent_id: str, dim: int) -> _Matrix | None:
        """The agent's cached matrix for `dim`-sized vectors, loaded on first use and again once
        another process (a replica) may have stored vectors of the agent."""
        stamp = await self.store.vector_stamp(agent_id)
        cached = self._cache.get(agent_id)
        if cached is None or cached.dim != dim or self._stamps.get(agent_id) != stamp:
            version = self._versions.get(agent_id, 0)
            rowids, blob = await self.store.load_vectors(agent_id, self.model, dim)
            if not rowids:
                return None
            cached = _Matrix(np.asarray(rowids, dtype=np.int64), np.frombuffer(blob, dtype=np.float32).reshape(-1, dim))
            if self._versions.get(agent_id, 0) == version:
                self._cache[agent_id] = cached
                self._stamps[agent_id] = stamp
        cached.settle()
        return cached
