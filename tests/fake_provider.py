"""A fake OpenAI-compatible chat-completions server for tests and benchmarks.

It is a real HTTP server (starlette + uvicorn in a background thread, so it serves while the test's
own event loop is busy or blocked) on 127.0.0.1. litellm talks to it exactly as to OpenAI:

    OPENAI_API_BASE=http://127.0.0.1:PORT/v1  OPENAI_API_KEY=test  model="openai/fake-model"

What it does:
- `POST /v1/chat/completions`, streamed (SSE: optional reasoning deltas via `reasoning_content`, text
  deltas, tool calls in OpenAI's streamed shape, a final usage chunk when `stream_options.include_usage`,
  then `[DONE]`) or plain JSON.
- Replies come from a FIFO queue of scripted replies (`enqueue(...)`); when the queue is empty it answers
  `DEFAULT_REPLY.format(last_user=<last user text>)`, so replies are paired with the prompt that caused them.
  A reply enqueued with `when="..."` is only used for a request whose last user message contains that text
  (for parallel conversations whose request order is not known).
- Every request is recorded (`requests`: model, messages, tools, stream flag, timings, whether the client
  hung up mid-stream).
- Scripted failures: `error_status=` (HTTP error with an OpenAI-shaped error body; `error_code=
  "context_length_exceeded"` makes litellm raise ContextWindowExceededError), `delay=` before the first byte,
  `chunk_delay=` between chunks, `wait_for=` a threading.Event to hold the reply until the test sets it
  (before the first byte, or with `hold_after=N` after the first N streamed deltas: a stream stuck mid-way;
  `hold_after` without `wait_for` holds until the client hangs up).
- `POST /v1/embeddings`: deterministic hashed bag-of-words vectors (dimension 64), for search tests;
  words in `SYNONYMS` share a dimension (a vector match without a shared word). `embedding_inputs` records
  each request's texts; `embedding_error = status` fails requests (only those with a text containing
  `embedding_fail_when`, if set); `embedding_delay` slows each request, `embeddings_max_in_flight` counts
  the most answered at once.
- `POST /v1/rerank` (also `/v2/rerank` and `/rerank`, where litellm's cohere/, hosted_vllm/ and
  infinity/ routes send it): Cohere's shape, `{"results": [{"index", "relevance_score"}], ...}`, best first,
  cut to `top_n`. A document scores the share of the query's words it holds, unless it contains a key of
  `rerank_scores` (then that key's score: a test decides the order); a body with `texts` instead of
  `documents` (Hugging Face TEI's `/rerank`) gets TEI's answer, a list of `{"index", "score"}`.
  `rerank_inputs` records each request
  (path, model, query, documents, top_n); `rerank_error = status` fails requests, `rerank_delay` stalls
  each one (seconds).
- Remote control for a separately started process: `POST /_fake/enqueue` (JSON body = enqueue's keyword
  arguments except `wait_for`), `POST /_fake/rerank` (JSON body: any of `scores`, `error`, `delay`),
  `GET /_fake/requests`, `POST /_fake/reset`.

In tests, use the `fake_provider` fixture (registered in tests/conftest.py): it shares one server across the run,
reset before each test, and points litellm at it through the environment. From a script:

    with FakeProvider() as fake:          # or FakeProvider(port=8799).start()
        fake.enqueue("hello", chunk_delay=0.01)
        ... call litellm with api_base=fake.base_url ...

or run it standalone: `python tests/fake_provider.py --port 8799 [--chunk-delay 0.005] [--words 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from fake_search_endpoints import SearchEndpoints
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_REPLY = "Fake reply to: {last_user}"


@dataclass
class ToolCallSpec:
    """A tool call the fake model makes. `arguments` may be a dict (JSON-encoded for the wire) or raw text."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:12])

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted reply. `started` is set when a request picks it up, `finished` when it was fully sent."""

    text: str | None = None
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    reasoning: str | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    error_status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage: dict[str, int] | None = None
    when: str | None = None
    wait_for: threading.Event | None = None
    hold_after: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass
class RecordedRequest:
    """What a client sent, plus when it was served (time.monotonic() values, None if it did not happen)."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    stream: bool
    body: dict[str, Any]
    started_at: float
    first_chunk_at: float | None = None
    finished_at: float | None = None
    disconnected: bool = False
    status: int = 200

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools or []]

    @property
    def system(self) -> str | None:
        """The first system message's text (where the agent's memory is compiled)."""
        for m in self.messages:
            if m.get("role") == "system":
                return _text(m.get("content"))
        return None

    @property
    def last_user(self) -> str:
        return _last_user(self.messages)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return _text(m.get("content"))
    return ""


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A crude token count (4 characters a token) used for the fake usage figures."""
    return max(1, sum(len(_text(m.get("content"))) + len(json.dumps(m.get("tool_calls") or "")) for m in messages) // 4)


def _pieces(text: str) -> list[str]:
    """Split text into word-sized deltas that concatenate back to exactly `text`."""
    return re.findall(r"\s*\S+|\s+$", text) or ([text] if text else [])


class FakeProvider(SearchEndpoints):
    """The fake server. Thread-safe: tests may enqueue and read `requests` from any thread or loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_reply: str = DEFAULT_REPLY) -> None:
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self.default_reply = self._initial_reply = default_reply
        self.default_chunk_delay = 0.0
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._live: set[int] = set()  # ids of the records counted in in_flight (requests since the last reset)
        self.embedding_inputs: list[list[str]] = []
        self.embedding_error: int | None = None
        self.embedding_fail_when: str | None = None
        self.embedding_delay = 0.0  # seconds each embedding request takes
        self.embeddings_in_flight = self.embeddings_max_in_flight = 0
        self.rerank_inputs: list[dict[str, Any]] = []
        self.rerank_scores: dict[str, float] = {}  # a document containing a key scores its value
        self.rerank_error: int | None = None
        self.rerank_delay = 0.0  # seconds each rerank request takes
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                *(Route(path, self._rerank, methods=["POST"]) for path in ("/v1/rerank", "/v2/rerank", "/rerank")),
                Route("/_fake/enqueue", self._remote_enqueue, methods=["POST"]),
                Route("/_fake/rerank", self._remote_rerank, methods=["POST"]),
                Route("/_fake/requests", self._remote_requests, methods=["GET"]),
                Route("/_fake/reset", self._remote_reset, methods=["POST"]),
            ]
        )

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL to give litellm as `api_base` / OPENAI_API_BASE (ends in /v1)."""
        if self.port is None:
            raise RuntimeError("FakeProvider is not started")
        return f"http://{self.host}:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """Environment variables that point litellm's `openai/...` models at this server."""
        return {"OPENAI_API_BASE": self.base_url, "OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "test"}

    def start(self) -> FakeProvider:
        # proto IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP;
        # without it Nagle holds each SSE chunk behind the headers until the client's delayed ACK (~40 ms
        # per request on a kept-alive connection, which real providers do not add).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])), name="fake-provider", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake provider did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            with self._cond:  # wake replies held on wait_for so shutdown is not blocked
                self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------------------------------

    def enqueue(
        self,
        text: str | None = None,
        *,
        tool_calls: list[ToolCallSpec | dict[str, Any]] | None = None,
        reasoning: str | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        error_status: int | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        usage: dict[str, int] | None = None,
        when: str | None = None,
        wait_for: threading.Event | None = None,
        hold_after: int | None = None,
    ) -> Reply:
        """Queue the next reply. `tool_calls` items: ToolCallSpec or {"name", "arguments", "id"?}.

        `wait_for` holds the reply before its first byte, or with `hold_after=N` after N streamed deltas.

        With `text=None` and no tool calls the reply is the default echo. `usage` overrides the computed
        prompt/completion token counts. Returns the Reply, whose `started`/`finished` events tests may wait on.
        """
        calls = [c if isinstance(c, ToolCallSpec) else ToolCallSpec(**c) for c in tool_calls or []]
        reply = Reply(
            text=text,
            tool_calls=calls,
            reasoning=reasoning,
            delay=delay,
            chunk_delay=chunk_delay,
            error_status=error_status,
            error_code=error_code,
            error_message=error_message,
            usage=usage,
            when=when,
            wait_for=wait_for,
            hold_after=hold_after,
        )
        with self._cond:
            self._queue.append(reply)
        return reply

    def reset(self) -> None:
        """Forget queued replies and recorded requests, and put every knob a test may turn back to its
        default (the pytest fixture shares one server across tests and resets it before each)."""
        with self._cond:
            for reply in self._queue:  # replies never taken: nothing may stay held on them
                if reply.wait_for is not None:
                    reply.wait_for.set()
            self._queue.clear()
            self.requests.clear()
            self.embedding_inputs.clear()
            self._live.clear()  # an earlier test's request still open counts no more
            self.in_flight = self.max_in_flight = 0
            self.default_reply = self._initial_reply
            self.default_chunk_delay = 0.0
            self.embedding_error = None
            self.embedding_fail_when = None
            self.embedding_delay = 0.0
            self.embeddings_in_flight = self.embeddings_max_in_flight = 0
            self.rerank_inputs.clear()
            self.rerank_scores = {}
            self.rerank_error = None
            self.rerank_delay = 0.0

    @property
    def pending(self) -> int:
        """Scripted replies not used yet."""
        with self._lock:
            return len(self._queue)

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `n` requests arrived (from a thread; async code: `await asyncio.to_thread(...)`)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout=timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self.requests)}")
            return list(self.requests)

    async def await_requests(self, n: int, within: float = 10.0) -> list[RecordedRequest]:
        """Async variant of wait_for_requests that never blocks the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_requests, n, within)

    def _take(self, messages: list[dict[str, Any]]) -> Reply:
        last_user = _last_user(messages)
        with self._cond:
            for i, reply in enumerate(self._queue):
                if reply.when is None or reply.when in last_user:
                    return self._queue.pop(i)
        return Reply(text=self.default_reply.format(last_user=last_user), chunk_delay=self.default_chunk_delay)

    # -- HTTP handlers ----------------------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        messages = body.get("messages") or []
        record = RecordedRequest(
            model=body.get("model", ""),
            messages=messages,
            tools=body.get("tools"),
            stream=bool(body.get("stream")),
            body=body,
            started_at=time.monotonic(),
        )
        reply = self._take(messages)
        if reply.text is None and not reply.tool_calls and reply.error_status is None:
            reply.text = self.default_reply.format(last_user=_last_user(messages))
        with self._cond:
            self.requests.append(record)
            self._live.add(id(record))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
        reply.started.set()
        try:
            if reply.wait_for is not None and reply.hold_after is None:
                await self._hold(reply.wait_for)
            if reply.delay:
                await asyncio.sleep(reply.delay)
        except BaseException:
            self._done(record, reply, disconnected=True)
            raise
        if reply.error_status is not None:
            record.status = reply.error_status
            self._done(record, reply)
            return JSONResponse(self._error_body(reply), status_code=reply.error_status)
        if not record.stream:
            self._done(record, reply)
            return JSONResponse(self._completion(record, reply))
        return StreamingResponse(self._sse(record, reply), media_type="text/event-stream")

    async def _hold(self, event: threading.Event) -> None:
        while not event.is_set():
            if self._server is None or self._server.should_exit:
                return
            await asyncio.sleep(0.01)

    def _done(self, record: RecordedRequest, reply: Reply, disconnected: bool = False) -> None:
        with self._cond:
            record.finished_at = time.monotonic()
            record.disconnected = disconnected
            if id(record) in self._live:
                self._live.discard(id(record))
                self.in_flight -= 1
            self._cond.notify_all()
        reply.finished.set()

    @staticmethod
    def _error_body(reply: Reply) -> dict[str, Any]:
        message = reply.error_message
        if message is None:
            if reply.error_code == "context_length_exceeded":
                message = "This model's maximum context length is 1000 tokens. Please reduce the length of the input."
            else:
                message = f"fake provider error {reply.error_status}"
        kind = "invalid_request_error" if reply.error_status == 400 else "api_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": reply.error_code}}

    def _usage(self, record: RecordedRequest, reply: Reply) -> dict[str, int]:
        if reply.usage is not None:
            return dict(reply.usage)
        prompt = estimate_tokens(record.messages)
        out = (reply.reasoning or "") + (reply.text or "") + "".join(c.arguments_text() for c in reply.tool_calls)
        completion = max(1, len(out) // 4)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _completion(self, record: RecordedRequest, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_text()}}
                for c in reply.tool_calls
            ]
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:16],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": record.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
            ],
            "usage": self._usage(record, reply),
        }

    def _chunks(self, record: RecordedRequest, reply: Reply) -> Iterator[dict[str, Any]]:
        """The streamed chunks of a reply, in OpenAI's shape (without the envelope)."""
        yield {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for piece in _pieces(reply.reasoning or ""):
            yield {"choices": [{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": None}]}
        for piece in _pieces(reply.text or ""):
            yield {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for i, call in enumerate(reply.tool_calls):
            start = {"index": i, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            yield {"choices": [{"index": 0, "delta": {"tool_calls": [start]}, "finish_reason": None}]}
            args = call.arguments_text()
            step = max(1, len(args) // 3 + 1)
            for j in range(0, len(args), step):
                frag = {"index": i, "function": {"arguments": args[j : j + step]}}
                yield {"choices": [{"index": 0, "delta": {"tool_calls": [frag]}, "finish_reason": None}]}
        finish = "tool_calls" if reply.tool_calls else "stop"
        yield {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if (record.body.get("stream_options") or {}).get("include_usage"):
            yield {"choices": [], "usage": self._usage(record, reply)}

    async def _sse(self, record: RecordedRequest, reply: Reply) -> AsyncIterator[bytes]:
        envelope = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:16],
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": record.model,
        }
        disconnected = True
        try:
            for n, chunk in enumerate(self._chunks(record, reply)):
                if n and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                yield f"data: {json.dumps({**envelope, **chunk})}\n\n".encode()
                if record.first_chunk_at is None:
                    record.first_chunk_at = time.monotonic()
                if reply.hold_after is not None and n == reply.hold_after:  # n counts deltas after the role chunk
                    await self._hold(reply.wait_for or threading.Event())
            yield b"data: [DONE]\n\n"
            disconnected = False
        finally:
            self._done(record, reply, disconnected=disconnected)

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]})

    async def _remote_enqueue(self, request: Request) -> Response:
        kwargs = await request.json()
        kwargs.pop("wait_for", None)
        self.enqueue(**kwargs)
        return JSONResponse({"queued": self.pending})

    async def _remote_requests(self, request: Request) -> Response:
        with self._lock:
            rows = [asdict(r) for r in self.requests]
            reranks = list(self.rerank_inputs)
        return JSONResponse({"requests": rows, "max_in_flight": self.max_in_flight, "reranks": reranks})

    async def _remote_reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})


try:  # the pytest fixture, when imported under pytest (tests/conftest.py registers this module as a plugin)
    import pytest

    @pytest.fixture(scope="session")
    def _fake_provider_server() -> Iterator[FakeProvider]:
        """One server for the whole run: starting and stopping one per test cost more than the tests."""
        with FakeProvider() as fake:
            yield fake

    @pytest.fixture
    def fake_provider(_fake_provider_server: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
        """The shared FakeProvider, reset, with litellm's OpenAI env vars pointing at it for this test."""
        fake = _fake_provider_server
        fake.reset()
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake
        fake.reset()  # releases replies a failed test left held

except ImportError:  # pragma: no cover - plain script without pytest installed
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible chat-completions server (SSE).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument("--words", type=int, default=0, help="default reply of N words instead of the echo")
    args = parser.parse_args()
    default = " ".join(f"word{i}" for i in range(args.words)) if args.words else DEFAULT_REPLY
    fake = FakeProvider(args.host, args.port, default_reply=default)
    fake.default_chunk_delay = args.chunk_delay
    fake.start()
    print(f"fake provider at {fake.base_url}  (OPENAI_API_BASE={fake.base_url} OPENAI_API_KEY=test)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
    fake.stop()


if __name__ == "__main__":
    main()
