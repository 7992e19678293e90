"""Writing a Letta agent file (`.af`) from an agent and one conversation's messages, in the shape
Letta's importer accepts (its `AgentFileSchema`)."""

from __future__ import annotations

import re
from typing import Any

from .. import __version__
from ..models import Agent, Message
from ..runs.prompt import SUMMARY_PREFIX
from ..util import now_iso

# Letta's provider types (LLMConfig.model_endpoint_type) that litellm's provider prefixes map onto as is.
LETTA_PROVIDERS = {
    "openai",
    "anthropic",
    "google_ai",
    "google_vertex",
    "azure",
    "groq",
    "ollama",
    "mistral",
    "together",
    "bedrock",
    "deepseek",
    "xai",
    "fireworks",
    "openrouter",
}
PROVIDER_ALIASES = {"gemini": "google_ai", "vertex_ai": "google_vertex", "together_ai": "together"}
DEFAULT_WINDOW = 128_000  # an exported agent without a context window of its own
AGENT_NAME = re.compile(r"[^\w '\-]", re.UNICODE)  # what Letta refuses in an agent name


def _provider(handle: str | None) -> tuple[str, str]:
    """(Letta provider type, model name) of a litellm handle."""
    if not handle or "/" not in handle:
        return "openai", handle or "unknown"
    prefix, name = handle.split("/", 1)
    prefix = PROVIDER_ALIASES.get(prefix, prefix)
    return (prefix if prefix in LETTA_PROVIDERS else "openai"), name


def agent_name(name: str) -> str:
    """A name Letta accepts: letters, digits, spaces, `-`, `_` and `'`."""
    cleaned = AGENT_NAME.sub("_", name).strip()
    return cleaned or "agent"


def write(agent: Agent, history: list[Message], context: list[str], default_model: str | None) -> dict[str, Any]:
    """The agent file: the agent (`agent-0`), its blocks (`block-N`) and the messages (`message-N`) of one
    conversation, its system message first in context. is_err and run ids have no place in the format."""
    handle = agent.model or default_model
    endpoint, model_name = _provider(handle)
    ids = {m.id: f"message-{i}" for i, m in enumerate(history)}
    messages = [_letta_message(m, ids[m.id]) for m in history]
    in_context = [ids[i] for i in context if i in ids]
    system = [ids[m.id] for m in history if m.message_type == "system_message"][:1]
    in_context = system + [i for i in in_context if i not in system]
    blocks: list[dict[str, Any]] = [
        {
            "id": f"block-{i}",
            "label": b.label,
            "value": b.value,
            "limit": b.limit,
            "read_only": b.read_only,
            "description": b.description,
            "metadata": {},
            "is_template": False,
            "template_name": None,
            "preserve_on_migration": False,
        }
        for i, b in enumerate(agent.memory_blocks)
    ]
    return {
        "agents": [
            {
                "id": "agent-0",
                "name": agent_name(agent.name),
                "system": agent.system,
                "agent_type": "letta_v1_agent",
                "description": agent.description,
                "tags": agent.tags,
                "memory_blocks": [],
                "tools": [],
                "tool_ids": [],
                "source_ids": [],
                "block_ids": [b["id"] for b in blocks],
                "tool_rules": [],
                "llm_config": {
                    "model": model_name,
                    "model_endpoint_type": endpoint,
                    "context_window": agent.context_window_limit or DEFAULT_WINDOW,
                    "handle": handle,
                },
                "model": None,
                "context_window_limit": agent.context_window_limit,
                "include_base_tools": False,
                "in_context_message_ids": in_context,
                "messages": messages,
                "files_agents": [],
                "group_ids": [],
            }
        ],
        "groups": [],
        "blocks": blocks,
        "files": [],
        "sources": [],
        "tools": [],
        "mcp_servers": [],
        "skills": [],
        "metadata": {"exported_by": f"mcp-server-conversations {__version__}"},
        "created_at": now_iso(),
    }


def _letta_message(m: Message, file_id: str) -> dict[str, Any]:
    t = m.message_type
    out: dict[str, Any] = {"type": "message", "id": file_id, "agent_id": "agent-0", "created_at": m.created_at}
    out["model"] = m.model
    if t == "system_message":
        out.update(role="system", content=[{"type": "text", "text": m.content or ""}])
    elif t in ("user_message", "summary_message"):
        text = (SUMMARY_PREFIX if t == "summary_message" else "") + (m.content or "")
        out.update(role="user", content=[{"type": "text", "text": text}])
    elif t == "assistant_message":
        out.update(role="assistant", content=[{"type": "text", "text": m.content or ""}])
    elif t == "reasoning_message":
        part = {"type": "reasoning", "is_native": True, "reasoning": m.reasoning or m.content or "", "signature": None}
        out.update(role="assistant", content=[part])
    elif t == "tool_call_message":
        calls = [
            {"id": c.tool_call_id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls or []
        ]
        content = [{"type": "text", "text": m.content}] if m.content else []
        out.update(role="assistant", content=content, tool_calls=calls)
    else:  # tool_return_message
        out.update(role="tool", content=[{"type": "text", "text": m.content or ""}], tool_call_id=m.tool_call_id)
        if m.status in ("success", "error"):
            out["tool_returns"] = [{"tool_call_id": m.tool_call_id, "status": m.status, "func_response": m.content}]
    return out
