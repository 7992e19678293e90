"""Context compaction: when a conversation's prompt nears its window, the oldest in-context
messages are summarized into one summary_message that replaces them in the context.

- Trigger: estimated prompt tokens over 90% of the effective window (the agent's
  context_window_limit, else the model's known input window, else the configured default).
- What goes: everything after the system message except the most recent ~30% (by tokens, at
  least the newest message), never splitting a tool call from its return.
- The evicted rows stay in history (in_context false) and in search; the summary is a new row.
- The summarizer's own input is bounded to its window: the evicted transcript is summarized in
  chunks, each folded into the summary so far, so an already overflowed context still compacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..gateway import ModelGateway
from ..models import Agent, Message, Usage
from ..storage import NewMessage, Store
from .prompt import CHARS_PER_TOKEN, message_tokens, transcript_line

log = logging.getLogger("mcp_server_conversations.runs.compaction")

TRIGGER = 0.9  # compact when the prompt would exceed this share of the window
KEEP = 0.3  # share of the in-context tokens kept verbatim
CHUNK = 0.5  # share of the window one summarizer call may spend on transcript
SUMMARY_SHARE = 0.1  # the summary aims at this share of the window

SUMMARIZER_SYSTEM = (
    "You condense a conversation between a user and an AI assistant into a summary the assistant will read "
    "instead of the original messages. Keep facts, names, numbers, dates, decisions, preferences, open "
    "questions and what the user asked for. Write plainly in the third person, with no preamble. "
    "Use at most {words} words."
)


@dataclass
class Compaction:
    """What one compaction did; counts are in-context messages without the system message."""

    summary: Message | None
    messages_before: int
    messages_after: int
    usage: Usage = field(default_factory=Usage)


def effective_window(agent: Agent, gateway: ModelGateway, model: str) -> int:
    return agent.context_window_limit or gateway.max_input_tokens(model)


def over_threshold(prompt_tokens: int, window: int) -> bool:
    return prompt_tokens > TRIGGER * window


def choose_evicted(body: list[Message]) -> list[Message]:
    """The oldest messages to summarize, keeping the most recent ~30% of tokens (at least one message).

    A tool return is never separated from its call: the cut moves back to the call. A context
    whose only candidate is a previous summary has nothing to compact."""
    if len(body) < 2:
        return []
    tokens = [message_tokens(m) for m in body]
    budget = KEEP * sum(tokens)
    cut = len(body) - 1
    kept = tokens[cut]
    while cut > 0 and kept + tokens[cut - 1] <= budget:
        cut -= 1
        kept += tokens[cut]
    while cut > 0 and body[cut].message_type == "tool_return_message":
        cut -= 1
    evicted = body[:cut]
    if all(m.message_type == "summary_message" for m in evicted):
        return []
    return evicted


def _cut_middle(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    half = max(1, max_chars // 2 - 20)
    return f"{text[:half]} [... {len(text) - 2 * half} characters cut ...] {text[-half:]}"


def transcript_chunks(evicted: list[Message], chunk_tokens: int) -> list[str]:
    """The evicted messages as plain-text transcripts, each within `chunk_tokens` (long messages are cut)."""
    max_chars = int(chunk_tokens * CHARS_PER_TOKEN)
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for m in evicted:
        line = transcript_line(m)
        if line is None:
            continue
        line = _cut_middle(line, max_chars)
        if current and size + len(line) + 1 > max_chars:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("\n".join(current))
    return chunks


class Compactor:
    """Summarizes a conversation's oldest in-context messages through the model gateway."""

    def __init__(self, store: Store, gateway: ModelGateway) -> None:
        self.store = store
        self.gateway = gateway

    async def compact(self, conversation_id: str, model: str, window: int, *, run_id: str | None = None) -> Compaction:
        """Compact now (the caller holds the conversation's turn). No model call if nothing can go."""
        context = await self.store.context_messages(conversation_id)
        body = context[1:]
        evicted = choose_evicted(body)
        if not evicted:
            return Compaction(None, len(body), len(body))
        text, usage = await self.summarize(model, window, evicted)
        summary = await self.store.replace_context_prefix(
            conversation_id,
            [m.id for m in evicted],
            NewMessage(message_type="summary_message", role="system", content=text, model=model, run_id=run_id),
        )
        log.info("compacted %s: %d messages into a summary", conversation_id, len(evicted))
        return Compaction(summary, len(body), len(body) - len(evicted) + 1, usage)

    async def summarize(self, model: str, window: int, evicted: list[Message]) -> tuple[str, Usage]:
        """Fold the evicted transcript, chunk by chunk, into one summary."""
        words = max(50, int(window * SUMMARY_SHARE * 0.75))
        system = {"role": "system", "content": SUMMARIZER_SYSTEM.format(words=words)}
        summary_cap = int(window * SUMMARY_SHARE * 2 * CHARS_PER_TOKEN)
        chunk_tokens = max(200, int(window * CHUNK))
        usage = Usage()
        summary = ""
        for chunk in transcript_chunks(evicted, chunk_tokens):
            parts = []
            if summary:
                parts.append(f"Summary so far:\n{summary}\n")
            parts.append(f"Messages:\n{chunk}\n\nWrite the {'updated ' if summary else ''}summary.")
            done = await self.gateway.complete(model, [system, {"role": "user", "content": "\n".join(parts)}])
            usage = Usage(
                prompt_tokens=usage.prompt_tokens + done.usage.prompt_tokens,
                completion_tokens=usage.completion_tokens + done.usage.completion_tokens,
                total_tokens=usage.total_tokens + done.usage.total_tokens,
            )
            summary = _cut_middle(done.content.strip(), summary_cap) or summary
        if not summary:
            summary = f"{len(evicted)} earlier messages were removed from the context window."
        return summary, usage
