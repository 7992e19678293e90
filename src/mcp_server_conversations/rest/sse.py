"""A run as Letta's SSE stream: unnamed `data:` events carrying Letta message objects, then
`stop_reason`, `usage_statistics` and `data: [DONE]`.

The run itself belongs to the server (the runtime runs it in the background), so it completes
whether or not anyone reads this stream. The stream only watches it: headers and a first comment
go out at once, a keepalive (`: keepalive`, or a `ping` chunk when the client asked for pings)
follows every `keepalive` seconds of silence, well under the SDK's 60 s read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ..app import App
from ..errors import ConversationsError
from ..models import FINISHED, Run
from ..runs.events import RunEvent
from . import shapes

log = logging.getLogger("mcp_server_conversations.rest")

DONE = b"data: [DONE]\n\n"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class StreamOptions:
    stream_tokens: bool = False
    include_pings: bool = False
    types: set[str] | None = None  # include_return_message_types


Item = tuple[int | None, RunEvent] | Exception  # an event and its number in the run's feed (seq_id)
RETAIN = 600.0  # seconds a finished run's feed stays to re-attach to (a client recovering a dropped stream)
MAX_FEEDS = 256  # feeds kept at most: beyond, the oldest finished ones go first (their runs stay readable)


@dataclass
class Feed:
    """The events of one run, numbered from 1 (the chunks' `seq_id`), as queues a listener fills: the
    stream that started the run drains `queue`; a client re-attaching (`follow`) gets its own, with
    every event so far, so it can skip what it has seen (`starting_after`)."""

    queue: asyncio.Queue[Item] = field(default_factory=asyncio.Queue)
    events: list[RunEvent] = field(default_factory=list)
    followers: list[asyncio.Queue[Item]] = field(default_factory=list)
    opts: StreamOptions | None = None  # how the run was first streamed; a re-attached stream repeats it
    on_done: Callable[[], Any] | None = None

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1].kind == "done"

    async def listener(self, ev: RunEvent) -> None:
        self.events.append(ev)
        item = (len(self.events), ev)
        self.queue.put_nowait(item)
        for q in self.followers:
            q.put_nowait(item)
        if ev.kind == "done" and self.on_done is not None:
            self.on_done()

    def follow(self) -> asyncio.Queue[Item]:
        q: asyncio.Queue[Item] = asyncio.Queue()
        for i, ev in enumerate(self.events, start=1):
            q.put_nowait((i, ev))
        self.followers.append(q)
        return q


def register(app: App, run_id: str, feed: Feed) -> None:
    """Keep the feed of a run this process streams, for re-attaching, until RETAIN after it ends."""
    feeds: dict[str, Feed] = app.rest.run_feeds
    if run_id in feeds:
        return
    if len(feeds) >= MAX_FEEDS:
        for old in [k for k, f in feeds.items() if f.done][: len(feeds) - MAX_FEEDS + 1]:
            del feeds[old]
    feeds[run_id] = feed
    feed.on_done = lambda: asyncio.get_running_loop().call_later(RETAIN, feeds.pop, run_id, None)
    if feed.done:
        feed.on_done()


def feed_of(app: App, run_id: str) -> Feed | None:
    feed: Feed | None = app.rest.run_feeds.get(run_id)
    return feed


def keepalive_of(app: App) -> float:
    return app.rest.sse_keepalive


def error_type(text: str | None) -> str:
    """litellm's error class, which our run errors lead with ("RateLimitError: …")."""
    head = (text or "").split(":", 1)[0].strip()
    return head if head.isidentifier() else "internal_error"


class Translator:
    """RunEvents -> SSE chunks. Each stored message is sent once; with `stream_tokens` the
    reasoning and assistant text go out as deltas sharing the message's id instead."""

    def __init__(self, opts: StreamOptions, *, replaying: bool = False) -> None:
        self.opts = opts
        self.replaying = replaying  # joined mid-run: send whole stored messages, no deltas
        self.sent: set[str] = set()
        self.streamed: set[str] = set()

    def wanted(self, message_type: str) -> bool:
        return self.opts.types is None or message_type in self.opts.types

    def chunks(self, ev: RunEvent, seq: int | None = None) -> list[bytes]:
        """The event's chunk, if any; `seq`: its `seq_id`."""
        chunk = self._chunk(ev)
        if chunk is None:
            return []
        if seq is not None:
            chunk["seq_id"] = seq
        return [event(chunk)]

    def _chunk(self, ev: RunEvent) -> dict[str, Any] | None:
        if ev.kind in ("reasoning_delta", "text_delta"):
            if not self.opts.stream_tokens or self.replaying or not ev.message_id or not ev.delta:
                return None
            chunk = shapes.delta(ev.kind, ev.message_id, ev.delta, ev.run_id)
            if not self.wanted(chunk["message_type"]):
                return None
            self.streamed.add(ev.message_id)
            return chunk
        if ev.kind == "message" and ev.message is not None:
            m = ev.message
            if m.id in self.sent or m.id in self.streamed or m.message_type in ("user_message", "system_message"):
                return None
            self.sent.add(m.id)
            shaped = shapes.message(m)
            return shaped if self.wanted(shaped["message_type"]) else None
        return None

    def finale(self, run: Run, seq: int | None = None) -> list[bytes]:
        """Any stored message not sent yet, an error_message for a failed run, then stop_reason and usage;
        numbered from `seq` (the number of the run's last event) when given."""
        out = [c for m in run.messages if (c := self._chunk(RunEvent("message", run.id, message=m))) is not None]
        if run.status == "failed":
            text = run.error or "the model call failed"
            out.append(shapes.error_message(run.id, error_type(run.error), text))
        out.append({**shapes.stop_reason(run), "run_id": run.id})
        out.append(shapes.usage(run))
        if seq is not None:
            for i, chunk in enumerate(out):
                chunk["seq_id"] = seq + i
        return [event(c) for c in out]


async def _next(queue: asyncio.Queue[Any], wait: float) -> Any:
    try:
        return await asyncio.wait_for(queue.get(), wait)
    except TimeoutError:
        return None


def failure(run_id: str, e: Exception) -> list[bytes]:
    """A failure outside the run (it could not start, or the stream broke) as chunks, not a dropped connection."""
    if isinstance(e, ConversationsError):
        kind, text = type(e).__name__, e.message
    else:
        log.error("streaming run %s failed", run_id or "(not started)", exc_info=e)
        kind, text = "internal_error", "internal server error; see the server log"
    return [
        event(shapes.error_message(run_id, kind, text)),
        event({"message_type": "stop_reason", "stop_reason": "error"}),
        DONE,
    ]


async def stream_body(
    app: App,
    started: asyncio.Future[Run],
    feed: Feed,
    opts: StreamOptions,
    replay: Callable[[Run], bool],
    *,
    subscribe: bool = False,
    source: asyncio.Queue[Item] | None = None,
    after: int | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body for the run `started` resolves to: see the module docstring.

    `feed` gets the run's events from the moment its listener was attached. When `replay(run)` is
    true the run began before that (an SDK retry joining the run of its first attempt, or a resumed
    stream): what the run has stored is sent first, whole, and the feed's events follow, each message
    once. With `subscribe` (no listener was attached), or for a run another process executes (whose
    events never reach this one), the feed is filled from `runtime.subscribe`.

    Otherwise the chunks carry `seq_id`, the number of their event in the run's feed, and the feed is
    kept for re-attaching: `source` is a follower of it (every event from the first), and only chunks
    after `after` are sent, the ones before only bring the translation up to date."""
    wait = keepalive_of(app)
    ping = event(shapes.ping(None)) if opts.include_pings else b": keepalive\n\n"
    yield b": stream open\n\n"
    while not started.done():
        await asyncio.wait({started}, timeout=wait)
        if not started.done():
            yield ping
    try:
        run = started.result()
    except Exception as e:
        for chunk in failure("", e):
            yield chunk
        return
    ping = event(shapes.ping(run.id)) if opts.include_pings else ping
    replaying = replay(run)
    translate = Translator(opts, replaying=replaying)
    queue = source or feed.queue
    if not replaying and source is None:
        feed.opts = opts
        register(app, run.id, feed)
    last = 0
    pump: asyncio.Task[None] | None = None
    try:
        final: Run | None = None
        elsewhere = feed.queue.empty() and not app.runtime.runs_here(run.id)  # nor did it end here already
        if (replaying and subscribe) or elsewhere:
            pump = asyncio.create_task(_pump(app, run.id, feed))
            await asyncio.sleep(0)  # let it subscribe before the stored part is read
        if replaying:
            now = await app.runtime.get_run(run.id)
            for m in now.messages:
                for chunk in translate.chunks(RunEvent("message", run.id, message=m)):
                    yield chunk
            final = now if now.status in FINISHED else None
        while final is None:
            item = await _next(queue, wait)
            if item is None:  # silence: keep the connection alive, and make sure the run has not ended unseen
                yield ping
                try:
                    now = await app.runtime.get_run(run.id)
                except ConversationsError as e:  # e.g. its conversation was deleted meanwhile
                    for chunk in failure(run.id, e):
                        yield chunk
                    return
                final = now if now.status in FINISHED else None
            elif isinstance(item, Exception):
                for chunk in failure(run.id, item):
                    yield chunk
                return
            else:
                seq, ev = item
                last = seq or last
                if ev.kind == "done":
                    final = ev.run or await app.runtime.get_run(run.id)
                    continue
                for chunk in translate.chunks(ev, None if replaying else seq):
                    if after is None or seq is None or seq > after:
                        yield chunk
        for i, chunk in enumerate(translate.finale(final, None if replaying else last + 1)):
            if after is None or replaying or last + 1 + i > after:
                yield chunk
        yield DONE
    finally:
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump


async def _pump(app: App, run_id: str, feed: Feed) -> None:
    """Feed a run's live events from `runtime.subscribe` until it ends."""
    try:
        async for ev in app.runtime.subscribe(run_id):
            await feed.listener(ev)
    except Exception as e:  # surface it in the stream rather than hang it
        feed.queue.put_nowait(e)


async def wait_for_end(app: App, started: asyncio.Future[Run]) -> Run:
    """The final run, for `streaming=false` callers, wherever it runs."""
    run = await started
    return await app.runtime.wait_for_end(run.id)
