"""The model gateway: every model call goes through litellm here, and litellm's errors are
mapped to the server's error tree here and nowhere else.

litellm takes seconds to import, so it is imported lazily (never on the path to answering
`initialize`); `warm()` imports it in a worker thread once the server is up so the first send
does not pay the whole cost. litellm also writes banners and low-level logs to stdout, which
belongs to the protocol on stdio: its loggers are set to WARNING before the import and
`suppress_debug_info` right after.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

from .config import Settings
from .errors import ContextWindowError, ModelNotConfiguredError, ProviderError
from .local.models import LocalEmbedder, is_local
from .models import Usage

log = logging.getLogger("mcp_server_conversations.gateway")

_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_import_lock = threading.Lock()
_configured = threading.Event()  # set once _load_litellm has imported and configured litellm
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
_SECRET_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-.=]{6,}"),
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{4,}"),
)
_CONTEXT_HINTS = ("context_length_exceeded", "maximum context length", "context window", "too many tokens")


def _load_litellm() -> ModuleType:
    """Import and configure litellm once (thread-safe; runs in a worker thread)."""
    with _import_lock:
        first = "litellm" not in sys.modules
        if first:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("PYTHON_DOTENV_DISABLED", "1")
            for name in _LITELLM_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        litellm: Any = importlib.import_module("litellm")
        litellm.suppress_debug_info = True
        if first:
            # litellm's ~300k import-time objects live as long as the process: keep them out of the
            # garbage collector's full passes, which otherwise stall a request now and then (p99; bench/).
            gc.freeze()
        _configured.set()
        return litellm


def litellm_loaded() -> bool:
    return "litellm" in sys.modules


def litellm_ready() -> bool:
    """Whether litellm is imported and configured: a call now waits for no import. (litellm is in
    sys.modules from the start of its seconds-long import.)"""
    return _configured.is_set()


@dataclass(frozen=True, slots=True)
class Delta:
    """Something the model streamed: a text or reasoning fragment, or the start of a tool call."""

    kind: Literal["text", "reasoning", "tool_call"]
    text: str  # the fragment, or the tool's name for tool_call
    index: int = 0  # tool call index within the step


@dataclass
class Completion:
    """The whole message a model call produced, assembled from its stream."""

    model: str
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # {tool_call_id, name, arguments}
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None


def redact(text: str) -> str:
    """Remove anything that looks like a credential from a provider's error message."""
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_ENV.search(name) and value in text:
            text = text.replace(value, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "sk-") + "***", text)
    return text


def _clean_message(error: BaseException) -> str:
    """litellm prefixes messages with its own class names ("litellm.X: X: OpenAIException - ..."): drop them."""
    text = str(error).strip() or type(error).__name__
    text = re.sub(r"^(litellm\.\w+:\s*)+", "", text)
    text = re.sub(r"^(\w+Error:\s*)+", "", text)
    return redact(text)[:2000]


class ModelGateway:
    """Streaming chat completions over litellm, with the server's timeouts, retries and error mapping."""

    _open = 0  # gateways of this process between open() and close()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._litellm: ModuleType | None = None
        # Per-model facts litellm derives from its static model table and the process environment, asked
        # on every send; each answer walks litellm's provider logic (a tenth of a millisecond or more).
        self._configured: set[str] = set()
        self._infos: dict[str, dict[str, Any] | None] = {}
        self._local: dict[str, LocalEmbedder] = {}  # in-process embedding models by handle

    # -- loading --

    async def load(self) -> ModuleType:
        """litellm, imported in a worker thread on first use."""
        if self._litellm is None:
            self._litellm = await asyncio.to_thread(_load_litellm)
        return self._litellm

    def warm_in_background(self) -> None:
        """Start importing litellm in a daemon thread (not the loop's executor, so shutting the loop down
        never waits for an import); the first call then finds it imported or waits for the same import."""

        def load() -> None:
            try:
                _load_litellm()
            except Exception:  # reported again, with its cause, by the first model call
                log.warning("importing litellm failed", exc_info=True)

        threading.Thread(target=load, name="litellm-warm", daemon=True).start()

    async def warm(self) -> None:
        """Import litellm in the background after start-up; failures are logged, not raised."""
        try:
            await self.load()
            log.debug("litellm imported")
        except Exception:  # a broken install must not take the server down; the first send reports it
            log.warning("importing litellm failed", exc_info=True)

    def open(self) -> None:
        """Count this gateway as in use (litellm's HTTP clients are shared by the whole process)."""
        ModelGateway._open += 1

    async def close(self) -> None:
        """When the last gateway of the process closes, close litellm's cached HTTP clients (else
        "Unclosed client session" at loop end) and forget them, so a later gateway on the same loop
        gets fresh ones instead of "Cannot send a request, as the client has been closed"."""
        ModelGateway._open = max(0, ModelGateway._open - 1)
        if self._litellm is None or ModelGateway._open:
            return
        try:
            await self._litellm.close_litellm_async_clients()
            self._litellm.in_memory_llm_clients_cache.flush_cache()
        except Exception:
            log.debug("closing litellm clients failed", exc_info=True)

    # -- model facts --

    async def check_configured(self, model: str) -> None:
        """Raise ModelNotConfiguredError if litellm says the provider's key is missing from the environment.
        A model found configured is not asked about again (keys are read from the environment at start)."""
        litellm = await self.load()
        if model in self._configured:
            return
        try:
            info = litellm.validate_environment(model=model)
        except Exception:  # an unknown provider: let the call itself report it
            return
        # Only credentials block the call: litellm also lists base URLs that have defaults (ollama's
        # OLLAMA_API_BASE is localhost:11434 when unset); anything else surfaces as the provider's own error.
        missing = [k for k in info.get("missing_keys") or [] if k and _SECRET_ENV.search(k)]
        if missing and not info.get("keys_in_environment"):
            raise ModelNotConfiguredError(
                f"model {model} needs {', '.join(missing)} set in the server's environment "
                "(litellm reads provider keys and base URLs from it); set it and restart the server, "
                "or pick another model with override_model or the conversation's or agent's model"
            )
        self._configured.add(model)

    def _info(self, model: str) -> dict[str, Any] | None:
        """litellm's model-table entry for the model, None when it has none (litellm must be loaded)."""
        if model not in self._infos:
            try:
                self._infos[model] = dict(self._litellm.get_model_info(model))  # type: ignore[union-attr]
            except Exception:  # unknown to litellm (ModelNotMappedError is a plain Exception)
                self._infos[model] = None
        return self._infos[model]

    def takes_images(self, model: str) -> bool:
        """Whether litellm knows the model to accept image parts (litellm must be loaded)."""
        return bool((self._info(model) or {}).get("supports_vision"))

    def max_input_tokens(self, model: str) -> int:
        """The model's known input window, else the configured default (litellm must be loaded)."""
        if self._litellm is None:
            return self.settings.default_context_window
        info = self._info(model) or {}
        value = info.get("max_input_tokens") or info.get("max_tokens")
        return int(value) if value else self.settings.default_context_window

    def model_limits(self, model: str) -> tuple[int, int | None]:
        """The model's input window and, when litellm knows it, its largest output (litellm must be loaded)."""
        info = self._info(model) or {}
        output = info.get("max_output_tokens")
        return self.max_input_tokens(model), int(output) if output else None

    def _unpriced(self, model: str) -> bool:
        """True when litellm has no price for the model (local and self-hosted models). litellm then
        searches its whole price table again after every call (CPU on every send) to report a
        cost of nothing; the server reports no costs, so it is told the price is zero instead."""
        info = self._info(model)
        return info is None or info.get("input_cost_per_token") is None

    # -- errors --

    def map_error(self, error: Exception) -> ProviderError:
        """The one place litellm's (and its transports') exceptions become the server's errors."""
        name = type(error).__name__
        message = _clean_message(error)
        context_cls = getattr(self._litellm, "ContextWindowExceededError", None) if self._litellm else None
        if (context_cls is not None and isinstance(error, context_cls)) or (
            "BadRequest" in name and any(h in message.lower() for h in _CONTEXT_HINTS)
        ):
            return ContextWindowError("ContextWindowExceededError", message, status_code=400)
        status = {"RateLimitError": 429, "Timeout": 504, "BadRequestError": 400}.get(name)
        return ProviderError(name, message, status_code=status)

    # -- calls --

    async def stream(
        self, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AsyncIterator[Delta | Completion]:
        """Stream one model call: Deltas as they arrive, then the assembled Completion (last item).

        Raises ProviderError / ContextWindowError. Closing the iterator (or cancelling the task
        consuming it) stops the HTTP stream."""
        litellm = await self.load()
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self.settings.model_timeout,
            "num_retries": self.settings.model_retries,
        }
        if tools:
            kwargs["tools"] = tools
        if self._unpriced(model):
            kwargs["input_cost_per_token"] = kwargs["output_cost_per_token"] = 0.0
        result = Completion(model=model)
        calls: dict[int, dict[str, str]] = {}
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as e:
            raise self.map_error(e) from e
        try:
            iterator = response.__aiter__()
            while True:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as e:
                    raise self.map_error(e) from e
                usage = getattr(chunk, "usage", None)
                if usage and getattr(usage, "total_tokens", None):
                    result.usage = Usage(
                        prompt_tokens=usage.prompt_tokens or 0,
                        completion_tokens=usage.completion_tokens or 0,
                        total_tokens=usage.total_tokens or 0,
                    )
                if not chunk.choices:  # the usage chunk has no choices
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    result.finish_reason = choice.finish_reason
                delta = choice.delta
                if delta is None:
                    continue
                reasoning = getattr(delta, "reasoning_content", None)
                if reasoning:
                    result.reasoning += reasoning
                    yield Delta("reasoning", reasoning)
                if delta.content:
                    result.content += delta.content
                    yield Delta("text", delta.content)
                for tc in delta.tool_calls or []:
                    index = tc.index if tc.index is not None else len(calls)
                    call = calls.get(index)
                    if call is None:
                        call = calls[index] = {"tool_call_id": tc.id or "", "name": "", "arguments": ""}
                    fn = tc.function
                    if tc.id and not call["tool_call_id"]:
                        call["tool_call_id"] = tc.id
                    if fn is not None and fn.name and not call["name"]:
                        call["name"] = fn.name
                        yield Delta("tool_call", fn.name, index)
                    if fn is not None and fn.arguments:
                        call["arguments"] += fn.arguments
        finally:
            close = getattr(response, "aclose", None)
            if close is not None:
                try:
                    await asyncio.shield(close())
                except Exception:  # closing a broken stream must not mask the real outcome
                    pass
        for i in sorted(calls):
            call = calls[i]
            call["tool_call_id"] = call["tool_call_id"] or f"call_{i}"
            result.tool_calls.append(call)
        yield result

    async def embed(self, model: str, texts: list[str], *, within: float | None = None) -> list[list[float]]:
        """One embedding vector per text, in order (hybrid search). The caller handles failure (the
        indexer backs off and tries again later; a search falls back to full-text), so `within`
        (seconds) bounds the whole call: litellm 1.110 turns max_retries=0 into the OpenAI SDK's default of
        2 retries for embeddings, which would otherwise triple a hung provider's cost.

        Raises ProviderError (the same mapping as chat calls)."""
        timeout = within or self.settings.model_timeout
        if is_local(model):
            return await self._embed_locally(model, texts, within=timeout)
        litellm = await self.load()
        try:
            async with asyncio.timeout(timeout):
                response = await litellm.aembedding(model=model, input=texts, timeout=timeout, num_retries=0)
        except TimeoutError as e:
            raise ProviderError("Timeout", f"{model} gave no embeddings within {timeout:g} s", status_code=504) from e
        except Exception as e:
            raise self.map_error(e) from e
        items = sorted(response.data or [], key=lambda d: _field(d, "index") or 0)
        vectors = [_field(d, "embedding") for d in items]
        if len(vectors) != len(texts) or not all(isinstance(v, list) and v for v in vectors):
            raise ProviderError(
                "EmbeddingError", f"{model} returned {len(vectors)} usable embeddings for {len(texts)} inputs"
            )
        return vectors

    async def _embed_locally(self, model: str, texts: list[str], *, within: float) -> list[list[float]]:
        """A `local/` model in a worker thread (loaded there on first use: the event loop keeps going)."""
        embedder = self._local.get(model)
        if embedder is None:
            try:
                embedder = self._local[model] = LocalEmbedder(model)
            except ValueError as e:
                raise ProviderError("LocalModelError", str(e), status_code=400) from e
        try:
            async with asyncio.timeout(within):
                return await asyncio.to_thread(embedder.embed, texts)
        except TimeoutError as e:
            raise ProviderError("Timeout", f"{model} gave no embeddings within {within:g} s", status_code=504) from e
        except Exception as e:  # a broken install or model file: the indexer backs off and logs it
            raise ProviderError("LocalModelError", f"{model}: {e!r}", status_code=500) from e

    async def rerank(
        self, model: str, query: str, documents: list[str], *, top_n: int, within: float
    ) -> list[tuple[int, float]]:
        """The documents' (index, relevance) as the reranker orders them, best first, at most
        `top_n`. `within` (seconds) bounds the whole call, with no retries: the caller answers
        without the reranker instead (search/rerank.py).

        Raises ProviderError (the same mapping as chat calls)."""
        try:
            async with asyncio.timeout(within):
                litellm = await self.load()
                response = await litellm.arerank(
                    model=model, query=query, documents=documents, top_n=top_n, timeout=within, num_retries=0
                )
        except TimeoutError as e:
            raise ProviderError("Timeout", f"{model} gave no ranking within {within:g} s", status_code=504) from e
        except Exception as e:
            raise self.map_error(e) from e
        ranked: list[tuple[int, float]] = []
        seen: set[int] = set()
        for item in _field(response, "results") or []:
            index, score = _field(item, "index"), _field(item, "relevance_score")
            if not isinstance(index, int) or not 0 <= index < len(documents) or index in seen:
                raise ProviderError("RerankError", f"{model} returned an unknown or repeated document index {index!r}")
            if not isinstance(score, int | float) or score != score:  # NaN
                raise ProviderError("RerankError", f"{model} returned a relevance of {score!r}")
            seen.add(index)
            ranked.append((index, float(score)))
        ranked.sort(key=lambda pair: -pair[1])  # sorted here rather than trusting each route's order
        return ranked[:top_n]

    async def complete(self, model: str, messages: list[dict[str, Any]]) -> Completion:
        """A whole (streamed, then assembled) answer without tools: used by the summarizer."""
        final = Completion(model=model)
        async for item in self.stream(model, messages):
            if isinstance(item, Completion):
                final = item
        return final


def _field(item: Any, name: str) -> Any:
    """litellm's embedding and rerank items are dicts or objects depending on the provider route."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)
