"""Stored messages -> the chat-completions messages a model call sends, and a cheap token estimate.

The estimate deliberately avoids tokenizers: litellm's token_counter may try to download a
tokenizer for some model names (slow, or stuck without network), and counting every message
before every call would cost more than the call's own overhead. Characters / 3.5 over-counts
English a little, which only makes compaction start slightly early; a provider's context-window
error is the backstop.
"""

from __future__ import annotations

import json
from typing import Any

from ..models import Message

CHARS_PER_TOKEN = 3.5
PER_MESSAGE_TOKENS = 4
SUMMARY_PREFIX = (
    "[Summary of earlier messages of this conversation, removed from the context window to save space. "
    "They can still be found with conversation_search.]\n"
)


def estimate_tokens(messages: list[dict[str, Any]], tools_chars: int = 0) -> int:
    """Estimated prompt tokens of a chat-completions request; `tools_chars`: its tool schemas' JSON
    length (constant for a run: its caller measures them once)."""
    chars = tools_chars
    for m in messages:
        content = m.get("content")
        chars += len(content) if isinstance(content, str) else len(json.dumps(content)) if content else 0
        if m.get("tool_calls"):
            chars += len(json.dumps(m["tool_calls"]))
    return int(chars / CHARS_PER_TOKEN) + PER_MESSAGE_TOKENS * len(messages)


def message_tokens(m: Message) -> int:
    """Estimated tokens one stored message adds to a prompt."""
    chars = len(m.content or "")
    for c in m.tool_calls or []:
        chars += len(c.name) + len(c.arguments) + 30
    return int(chars / CHARS_PER_TOKEN) + PER_MESSAGE_TOKENS


# What a prompt needs of a stored message: (message_type, content, tool_calls as stored JSON, tool_call_id, run_id).
ChatRow = tuple[str, str | None, str | None, str | None, str | None]


def to_chat(messages: list[Message]) -> list[dict[str, Any]]:
    """Chat-completions messages for in-context messages (without the conversation's system message)."""
    return rows_to_chat(
        [
            (
                m.message_type,
                m.content,
                json.dumps([c.model_dump() for c in m.tool_calls]) if m.tool_calls else None,
                m.tool_call_id,
                m.run_id,
            )
            for m in messages
        ]
    )


def rows_to_chat(rows: list[ChatRow], images: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Chat-completions messages for in-context rows as stored (without the conversation's system message);
    the send path builds its prompt from these without making a Message of every row.

    Reasoning is not sent back. An assistant text and the tool calls of the same step become one
    assistant message. Tool calls without a stored return (a fork cut between them) and returns
    without their call are dropped, since providers reject both. `images`: image parts by run, sent
    with that run's (last) user message beside its stored text."""
    out: list[dict[str, Any]] = []
    last_run: str | None = None
    with_images: dict[str, int] = {}  # run -> index of its last user message in `out`
    for t, content, tool_calls, tool_call_id, run_id in rows:
        if t == "user_message":
            if images and run_id in images:
                with_images[run_id] = len(out)
            out.append({"role": "user", "content": content or ""})
        elif t == "system_message":
            out.append({"role": "system", "content": content or ""})
        elif t == "summary_message":
            out.append({"role": "user", "content": SUMMARY_PREFIX + (content or "")})
        elif t == "assistant_message":
            out.append({"role": "assistant", "content": content or ""})
        elif t == "tool_call_message":
            stored = json.loads(tool_calls) if tool_calls else []
            calls = [_call(c["tool_call_id"], c["name"], c.get("arguments", "")) for c in stored]
            prev = out[-1] if out else None
            if (
                prev is not None
                and prev["role"] == "assistant"
                and "tool_calls" not in prev
                and run_id is not None
                and run_id == last_run
            ):
                prev["tool_calls"] = calls
            else:
                out.append({"role": "assistant", "content": content, "tool_calls": calls})
        elif t == "tool_return_message":
            out.append({"role": "tool", "tool_call_id": tool_call_id or "", "content": content or ""})
        last_run = run_id
    for run, index in with_images.items():  # the dicts themselves: _pair_tool_calls keeps them
        message = out[index]
        message["content"] = [{"type": "text", "text": message["content"]}, *(images or {})[run]]
    return _pair_tool_calls(out)


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments or "{}"}}


def _pair_tool_calls(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep only tool calls answered right after their assistant message, and only answered returns."""
    result: list[dict[str, Any]] = []
    i = 0
    while i < len(out):
        m = out[i]
        if m["role"] == "tool":  # a return whose call was not kept
            i += 1
            continue
        if m["role"] == "assistant" and m.get("tool_calls"):
            j = i + 1
            returns: list[dict[str, Any]] = []
            while j < len(out) and out[j]["role"] == "tool":
                returns.append(out[j])
                j += 1
            answered = {r["tool_call_id"] for r in returns}
            calls = [c for c in m["tool_calls"] if c["id"] in answered]
            kept_ids = {c["id"] for c in calls}
            msg = {k: v for k, v in m.items() if k != "tool_calls"}
            if calls:
                msg["tool_calls"] = calls
            if calls or msg.get("content"):
                result.append(msg)
            result.extend(r for r in returns if r["tool_call_id"] in kept_ids)
            i = j
            continue
        if m["role"] == "assistant" and not m.get("content"):
            i += 1  # an empty answer: some providers reject empty assistant text
            continue
        result.append(m)
        i += 1
    return result


def transcript_line(m: Message) -> str | None:
    """One message as a line of a plain transcript (for the summarizer); None for what it should skip."""
    t = m.message_type
    if t == "user_message":
        return f"user: {m.content or ''}"
    if t == "assistant_message":
        return f"assistant: {m.content or ''}" if m.content else None
    if t == "tool_call_message":
        calls = ", ".join(f"{c.name}({c.arguments})" for c in m.tool_calls or [])
        return f"assistant called {calls}"
    if t == "tool_return_message":
        return f"tool result: {m.content or ''}"
    if t == "summary_message":
        return f"summary of earlier messages: {m.content or ''}"
    if t == "system_message":
        return f"system: {m.content or ''}"
    return None
