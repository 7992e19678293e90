"""Our models in Letta's JSON shapes (what letta-client 1.12.1 validates strictly).

Every function here is a pure translation: no storage, no behaviour. Required fields of the SDK's
models are always present; our own extra fields ride along (the SDK allows extras)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..config import Settings
from ..models import Agent, Block, CompactResult, Conversation, Message, Run, SearchResult

AGENT_TYPE = "letta_v1_agent"

# litellm provider prefix -> Letta's llm_config.model_endpoint_type (an enum in the SDK).
ENDPOINT_TYPES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google_ai",
    "vertex_ai": "google_vertex",
    "azure": "azure",
    "groq": "groq",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "mistral": "mistral",
    "together_ai": "together",
    "bedrock": "bedrock",
    "deepseek": "deepseek",
    "xai": "xai",
    "openrouter": "openrouter",
    "fireworks_ai": "fireworks",
    "hosted_vllm": "vllm",
    "vllm": "vllm",
    "lm_studio": "lmstudio-chatcompletions",
    "huggingface": "hugging-face",
    "moonshot": "moonshot",
}

# Our stop reasons -> Letta's StopReasonType.
STOP_REASONS = {
    "end_turn": "end_turn",
    "max_steps": "max_steps",
    "error": "llm_api_error",
    "cancelled": "cancelled",
    "interrupted": "cancelled",
    "context_window_exceeded": "llm_api_error",
    "requires_approval": "requires_approval",
}
# Run errors that lead with these kinds are the server's own faults (a stored run error leads with its kind).
SERVER_FAULTS = {"StorageUnavailableError", "InternalError"}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def block(b: Block) -> dict[str, Any]:
    """BlockResponse (and the Block inside AgentState)."""
    return {
        "id": b.id,
        "label": b.label,
        "value": b.value,
        "limit": b.limit,
        "description": b.description,
        "read_only": b.read_only,
        "metadata": {},
        "version": b.version,  # ours: its memory history version (expected_version on update)
    }


def llm_config(handle: str | None, context_window: int) -> dict[str, Any]:
    provider, _, name = (handle or "").partition("/")
    return {
        "handle": handle,
        "model": name or provider,
        "context_window": context_window,
        "model_endpoint_type": ENDPOINT_TYPES.get(provider, "openai"),
    }


def agent_state(a: Agent, settings: Settings) -> dict[str, Any]:
    """AgentState. `model` is the effective handle: the agent's own, else the server default."""
    handle = a.model or settings.default_model
    blocks = [block(b) for b in a.memory_blocks]
    return {
        "id": a.id,
        "name": a.name,
        "system": a.system,
        "agent_type": AGENT_TYPE,
        "description": a.description,
        "tags": a.tags,
        "tools": [],
        "sources": [],
        "metadata": {},
        "model_settings": a.model_settings,
        "blocks": blocks,
        "memory": {"blocks": blocks, "agent_type": AGENT_TYPE},
        "model": handle,
        "llm_config": llm_config(handle, a.context_window_limit or settings.default_context_window),
        "created_at": a.created_at,
        "context_window_limit": a.context_window_limit,
    }


def conversation(c: Conversation, in_context: list[str] | None = None) -> dict[str, Any]:
    """Conversation; `in_context`: the ids of its context window in prompt order, where it was read."""
    forked = c.forked_from.model_dump() if c.forked_from else None
    return {
        "id": c.id,
        "agent_id": c.agent_id,
        "summary": c.summary,
        "model": c.model,
        "created_at": c.created_at,
        "last_message_at": c.last_run_completion,
        "archived": False,
        "in_context_message_ids": in_context,
        "last_run_completion": c.last_run_completion,
        "forked_from": forked,
        "message_count": c.message_count,
    }


def message(m: Message) -> dict[str, Any]:
    """A listed message as Letta's message union member for its `message_type`.

    Every item carries `content` and `reasoning` (null where the type has none), so the loop on
    Letta's Conversations page, `msg.content or msg.reasoning or ''`, runs on every type."""
    out: dict[str, Any] = {
        "id": m.id,
        "date": m.created_at,
        "message_type": m.message_type,
        "content": None,
        "reasoning": None,
        "run_id": m.run_id,
        "is_err": m.is_err,
        "otid": None,
        "name": None,
        "conversation_id": m.conversation_id,
        "in_context": m.in_context,
    }
    t = m.message_type
    if t in ("user_message", "system_message", "assistant_message"):
        out["content"] = m.content or ""
        if m.model:
            out["model"] = m.model
    elif t == "reasoning_message":
        out["reasoning"] = m.reasoning if m.reasoning is not None else (m.content or "")
        out["source"] = "reasoner_model"
    elif t == "tool_call_message":
        calls = [c.model_dump() for c in m.tool_calls or []]
        out["tool_call"] = calls[0] if calls else {"name": "", "arguments": "", "tool_call_id": ""}
        out["tool_calls"] = calls
        if m.status == "requires_approval":  # calls the client runs: Letta asks it for their results
            out["message_type"] = "approval_request_message"
    elif t == "tool_return_message":
        out["tool_return"] = m.content or ""
        out["status"] = m.status or ("error" if m.is_err else "success")
        out["tool_call_id"] = m.tool_call_id or ""
    elif t == "summary_message":
        out["summary"] = m.content or ""
        out["content"] = m.content or ""
    return out


def delta(kind: str, message_id: str, text: str, run_id: str) -> dict[str, Any]:
    """A token chunk of a streamed message (`stream_tokens=true`): deltas of one message share its id."""
    base = {"id": message_id, "date": now_iso(), "run_id": run_id, "otid": None}
    if kind == "reasoning_delta":
        return {**base, "message_type": "reasoning_message", "reasoning": text, "source": "reasoner_model"}
    return {**base, "message_type": "assistant_message", "content": text}


def stop_reason(run: Run) -> dict[str, Any]:
    reason = STOP_REASONS.get(run.stop_reason or "", "llm_api_error" if run.status == "failed" else "end_turn")
    if reason == "llm_api_error" and (run.error or "").split(":", 1)[0] in SERVER_FAULTS:
        reason = "error"  # the server's own failure, not the model's
    return {"message_type": "stop_reason", "stop_reason": reason}


def step_count(run: Run) -> int:
    """The run's model calls that completed: each step calling tools stored a tool-call message (a
    step calling both the agent's and the client's tools stored two, and counts twice), and a run
    that ended its turn made one more, its answer."""
    calls = sum(1 for m in run.messages if m.message_type == "tool_call_message")
    return calls + (1 if run.stop_reason == "end_turn" else 0)


def usage(run: Run) -> dict[str, Any]:
    u = run.usage
    return {
        "message_type": "usage_statistics",
        "prompt_tokens": u.prompt_tokens if u else 0,
        "completion_tokens": u.completion_tokens if u else 0,
        "total_tokens": u.total_tokens if u else 0,
        "step_count": step_count(run),
        "run_ids": [run.id],
    }


def error_message(run_id: str, error_type: str, text: str) -> dict[str, Any]:
    return {
        "message_type": "error_message",
        "run_id": run_id,
        "error_type": error_type,
        "message": text,
        "detail": text,
    }


def ping(run_id: str | None) -> dict[str, Any]:
    return {"message_type": "ping", "id": f"ping-{now_iso()}", "date": now_iso(), "run_id": run_id}


def search_result(r: SearchResult, agent_id: str | None) -> dict[str, Any] | None:
    """messages.search item; Letta's result union has only system/user/reasoning/assistant members,
    so summaries are reported as system messages and tool calls/returns are left out."""
    base = {
        "message_id": r.message_id,
        "created_at": r.created_at,
        "conversation_id": r.conversation_id,
        "agent_id": agent_id,
        "score": r.score,
        "snippet": r.snippet,
    }
    text = r.content or ""
    if r.message_type in ("user_message", "assistant_message", "system_message"):
        return {**base, "message_type": r.message_type, "content": text}
    if r.message_type == "summary_message":
        return {**base, "message_type": "system_message", "content": text}
    if r.message_type == "reasoning_message":
        return {**base, "message_type": "reasoning_message", "reasoning": text}
    return None


def compaction(result: CompactResult) -> dict[str, Any]:
    return {
        "summary": result.summary or "",
        "num_messages_before": result.messages_before,
        "num_messages_after": result.messages_after,
    }
