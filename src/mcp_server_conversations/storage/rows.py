"""Row <-> model conversion and packed rowid lists, shared by the SQLite store's parts."""

from __future__ import annotations

import json
from array import array
from typing import Any

from ..models import Agent, Block, BlockVersion, Conversation, ForkedFrom, Message, Run, SearchResult, ToolCall, Usage
from ..util import new_id, now_iso
from .types import NewMessage


def unpack(blob: bytes | None) -> list[int]:
    """A packed little-endian int64 rowid list to a Python list."""
    a = array("q")
    if blob:
        a.frombytes(blob)
    return a.tolist()


def pack(rowids: list[int]) -> bytes:
    return array("q", rowids).tobytes()


def block_from_row(r: Any) -> Block:
    return Block(
        id=r["id"],
        label=r["label"],
        value=r["value"],
        description=r["description"],
        limit=r["char_limit"],
        read_only=bool(r["read_only"]),
        version=r["version"] if "version" in r.keys() else 1,  # absent while older migrations are tested
    )


def block_version_from_row(r: Any) -> BlockVersion:
    return BlockVersion(
        version=r["version"],
        value=r["value"],
        changed_at=r["changed_at"],
        changed_by=json.loads(r["changed_by"]) if r["changed_by"] else None,
    )


def agent_from_row(r: Any, blocks: list[Block] | None = None) -> Agent:
    return Agent(
        id=r["id"],
        name=r["name"],
        model=r["model"],
        system=r["system"],
        context_window_limit=r["context_window_limit"],
        created_at=r["created_at"],
        memory_blocks=blocks or [],
        **(_letta_fields(r) if "tags" in r.keys() else {}),  # absent while older migrations are tested
    )


def _letta_fields(r: Any) -> dict[str, Any]:
    return {
        "description": r["description"],
        "tags": json.loads(r["tags"]) if r["tags"] else [],
        "model_settings": json.loads(r["model_settings"]) if r["model_settings"] else None,
        "default_conversation_id": r["default_conversation_id"],
    }


def conversation_from_row(r: Any) -> Conversation:
    forked = None
    if r["forked_from_conversation_id"]:
        forked = ForkedFrom(conversation_id=r["forked_from_conversation_id"], message_id=r["forked_from_message_id"])
    return Conversation(
        id=r["id"],
        agent_id=r["agent_id"],
        summary=r["summary"],
        model=r["model"],
        created_at=r["created_at"],
        last_run_completion=r["last_run_completion"],
        forked_from=forked,
        message_count=r["message_count"],
    )


def message_from_row(r: Any, in_context: bool) -> Message:
    """A row of `SELECT {MESSAGE_COLUMNS}` as a Message. Unpacked by position: looking the 16
    columns up by name in sqlite3.Row cost more than building the model (list_messages(100))."""
    (
        _,
        id_,
        agent_id,
        conversation_id,
        _,
        message_type,
        role,
        content,
        reasoning,
        tool_calls,
        tool_call_id,
        status,
        model,
        run_id,
        is_err,
        created_at,
    ) = r
    return Message(
        id=id_,
        conversation_id=conversation_id,
        agent_id=agent_id,
        message_type=message_type,
        role=role,
        content=content,
        created_at=created_at,
        run_id=run_id,
        is_err=bool(is_err),
        in_context=in_context,
        model=model,
        reasoning=reasoning,
        tool_calls=[ToolCall(**c) for c in json.loads(tool_calls)] if tool_calls else None,
        tool_call_id=tool_call_id,
        status=status,
    )


def run_from_row(r: Any, messages: list[Message] | None = None) -> Run:
    usage = None
    if r["total_tokens"] is not None:
        usage = Usage(
            prompt_tokens=r["prompt_tokens"] or 0,
            completion_tokens=r["completion_tokens"] or 0,
            total_tokens=r["total_tokens"] or 0,
        )
    return Run(
        id=r["id"],
        run_id=r["id"],
        conversation_id=r["conversation_id"],
        agent_id=r["agent_id"],
        model=r["model"],
        status=r["status"],
        stop_reason=r["stop_reason"],
        usage=usage,
        error=r["error"],
        started_at=r["started_at"],
        completed_at=r["completed_at"],
        created_at=r["created_at"],
        messages=messages or [],
    )


# A stored message's columns that message_values fills, in its order (rowid is the database's).
MESSAGE_FIELDS = (
    "id",
    "agent_id",
    "conversation_id",
    "home_conversation_id",
    "message_type",
    "role",
    "content",
    "reasoning",
    "tool_calls",
    "tool_call_id",
    "status",
    "model",
    "run_id",
    "is_err",
    "created_at",
    "search_extra",
)

MESSAGE_COLUMNS = (
    "rowid, id, agent_id, conversation_id, home_conversation_id, message_type, role, content, reasoning, "
    "tool_calls, tool_call_id, status, model, run_id, is_err, created_at"
)

BLOCKS_OF = "SELECT * FROM blocks WHERE agent_id = ? ORDER BY created_at, rowid"  # an agent's blocks, in order


def message_values(conv_id: str, agent_id: str, m: NewMessage) -> tuple[Any, ...]:
    """A new message's column values, in both backends' column order (id through search_extra)."""
    return (
        m.id or new_id("message"),
        agent_id,
        conv_id,
        conv_id,
        m.message_type,
        m.role,
        m.content,
        m.reasoning,
        json.dumps(m.tool_calls) if m.tool_calls else None,
        m.tool_call_id,
        m.status,
        m.model,
        m.run_id,
        int(m.is_err),
        m.created_at or now_iso(),
        m.search_extra(),
    )


def vector_hit_from_row(r: Any) -> SearchResult:
    """A vector-side search hit (snippet and score come from the fusion later)."""
    return SearchResult(
        message_id=r["id"],
        conversation_id=r["home_conversation_id"],
        role=r["role"],
        message_type=r["message_type"],
        content=r["content"] if r["content"] is not None else r["reasoning"],
        snippet="",
        created_at=r["created_at"],
        score=0.0,
    )
