"""A conversation's history as a readable Markdown transcript (the MCP transcript resource)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import MAX_PAGE, Message

if TYPE_CHECKING:
    from .conversations import ConversationService

TRANSCRIPT_MAX_CHARS = 2_000_000  # past this the transcript ends with a pointer to list_messages
ARGUMENTS_SHOWN = 500  # characters of a tool call's arguments shown


def render_message(m: Message) -> str:
    head = f"**{m.message_type.removesuffix('_message').replace('_', ' ')}** · {m.created_at}"
    if m.is_err:
        head += " · failed turn"
    if not m.in_context:
        head += " · out of context"
    parts = [head]
    if m.reasoning:
        parts.append("> " + m.reasoning.replace("\n", "\n> "))
    if m.content:
        parts.append(m.content)
    for call in m.tool_calls or []:
        args = call.arguments if len(call.arguments) <= ARGUMENTS_SHOWN else call.arguments[:ARGUMENTS_SHOWN] + "…"
        parts.append(f"`{call.name}({args})`")
    if m.status and m.message_type == "tool_return_message":
        parts[0] += f" · {m.status}"
    return "\n\n".join(parts)


async def transcript(service: ConversationService, conversation_id: str) -> str:
    """The whole history (a fork's inherited messages first), oldest first, up to TRANSCRIPT_MAX_CHARS."""
    conv = await service.get_conversation(conversation_id)
    out = [
        f"# {conv.summary or 'Conversation ' + conv.id}",
        f"conversation `{conv.id}` of agent `{conv.agent_id}` · created {conv.created_at} · "
        f"{conv.message_count} messages",
    ]
    size, after = 0, None
    while True:
        page = await service.list_messages(conversation_id, limit=MAX_PAGE, after=after)
        for m in page.messages:
            text = render_message(m)
            size += len(text)
            if size > TRANSCRIPT_MAX_CHARS:
                out.append(f"_… the transcript stops here, before message {m.id}; list_messages has the rest_")
                return "\n\n".join(out) + "\n"
            out.append(text)
        if page.next_cursor is None:
            return "\n\n".join(out) + "\n"
        after = page.next_cursor
