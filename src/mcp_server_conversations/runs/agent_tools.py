"""The agent's own tools: what the model inside send_message may call, and their execution.

Memory edits apply atomically to the block's current stored value (store.edit_block_value runs
the read-modify-write in one transaction), so edits from parallel conversations never lose each
other. Any failure (bad arguments, missing label, read-only block, over the limit, ambiguous
old_string) goes back to the model as the tool's result; the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from ..errors import ConversationsError
from ..models import Block, ChangedBy
from ..service.conversations import ConversationService

RESULT_CHARS = 2000  # a search hit's content is cut to this many characters in a tool result


class ToolFailure(Exception):
    """An error reported to the model as the tool's result."""


class CoreMemoryAppend(BaseModel):
    """Append text to the end of a memory block (on a new line)."""

    label: str = Field(description="Label of the memory block, e.g. human or persona")
    content: str = Field(description="Text to append")


class CoreMemoryReplace(BaseModel):
    """Replace every occurrence of old_content in a memory block with new_content (empty new_content deletes it)."""

    label: str = Field(description="Label of the memory block")
    old_content: str = Field(description="Exact text currently in the block")
    new_content: str = Field(description="Text to put in its place")


class MemoryInsert(BaseModel):
    """Insert text into a memory block at a line."""

    label: str = Field(description="Label of the memory block")
    new_string: str = Field(description="Text to insert")
    insert_line: int = Field(default=-1, description="Line number after which to insert: 0 = at the start, -1 = end")


class MemoryReplace(BaseModel):
    """Replace a unique piece of text in a memory block; old_string must occur exactly once."""

    label: str = Field(description="Label of the memory block")
    old_string: str = Field(description="Exact text to replace; include enough context to be unique")
    new_string: str = Field(description="Replacement text (may be empty to delete)")


class MemoryRethink(BaseModel):
    """Rewrite a memory block completely, e.g. to reorganize or condense it."""

    label: str = Field(description="Label of the memory block")
    new_memory: str = Field(description="The block's whole new value")


class ConversationSearch(BaseModel):
    """Search past messages of all your conversations (full text, best match first)."""

    query: str = Field(description="Words or a question to look for")
    roles: list[Literal["user", "assistant", "tool"]] | None = Field(
        default=None, description="Only messages of these roles"
    )
    limit: int | None = Field(default=None, description="Results to return, 1-100 (default 10)")
    start_date: str | None = Field(default=None, description="YYYY-MM-DD or ISO datetime, inclusive")
    end_date: str | None = Field(default=None, description="YYYY-MM-DD (whole day) or ISO datetime, inclusive")


ARGUMENTS: dict[str, type[BaseModel]] = {
    "core_memory_append": CoreMemoryAppend,
    "core_memory_replace": CoreMemoryReplace,
    "memory_insert": MemoryInsert,
    "memory_replace": MemoryReplace,
    "memory_rethink": MemoryRethink,
    "conversation_search": ConversationSearch,
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


TOOL_SCHEMAS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {"name": name, "description": (model.__doc__ or "").strip(), "parameters": _schema(model)},
    }
    for name, model in ARGUMENTS.items()
]


@dataclass(frozen=True, slots=True)
class ToolResult:
    text: str
    ok: bool


def _check_writable(block: Block | None, label: str) -> Block:
    if block is None:
        raise ToolFailure(f"there is no memory block labelled {label!r}; use one of the labels in your core memory")
    if block.read_only:
        raise ToolFailure(f"memory block {label!r} is read-only; it cannot be edited")
    return block


def _fit(block: Block, value: str) -> str:
    if len(value) > block.limit:
        raise ToolFailure(
            f"the edit would make block {block.label!r} {len(value)} characters, over its limit of {block.limit}; "
            "condense it first (memory_rethink) or write less"
        )
    return value


def _append(args: CoreMemoryAppend) -> Callable[[Block | None], str]:
    def edit(current: Block | None) -> str:
        block = _check_writable(current, args.label)
        return _fit(block, f"{block.value}\n{args.content}" if block.value else args.content)

    return edit


def _core_replace(args: CoreMemoryReplace) -> Callable[[Block | None], str]:
    def edit(current: Block | None) -> str:
        block = _check_writable(current, args.label)
        if not args.old_content:
            raise ToolFailure("old_content must not be empty")
        if args.old_content not in block.value:
            raise ToolFailure(f"old_content was not found in block {args.label!r}; copy it exactly from the block")
        return _fit(block, block.value.replace(args.old_content, args.new_content))

    return edit


def _insert(args: MemoryInsert) -> Callable[[Block | None], str]:
    def edit(current: Block | None) -> str:
        block = _check_writable(current, args.label)
        lines = block.value.split("\n") if block.value else []
        at = len(lines) if args.insert_line == -1 else args.insert_line
        if not 0 <= at <= len(lines):
            raise ToolFailure(f"insert_line {args.insert_line} is outside 0..{len(lines)} (or -1 for the end)")
        return _fit(block, "\n".join(lines[:at] + args.new_string.split("\n") + lines[at:]))

    return edit


def _replace(args: MemoryReplace) -> Callable[[Block | None], str]:
    def edit(current: Block | None) -> str:
        block = _check_writable(current, args.label)
        if not args.old_string:
            raise ToolFailure("old_string must not be empty")
        count = block.value.count(args.old_string)
        if count == 0:
            raise ToolFailure(f"old_string was not found in block {args.label!r}; copy it exactly from the block")
        if count > 1:
            raise ToolFailure(
                f"old_string occurs {count} times in block {args.label!r}; include more surrounding text so it "
                "occurs exactly once"
            )
        return _fit(block, block.value.replace(args.old_string, args.new_string, 1))

    return edit


def _rethink(args: MemoryRethink) -> Callable[[Block | None], str]:
    def edit(current: Block | None) -> str:
        return _fit(_check_writable(current, args.label), args.new_memory)

    return edit


EDITS: dict[str, Callable[[Any], Callable[[Block | None], str]]] = {
    "core_memory_append": _append,
    "core_memory_replace": _core_replace,
    "memory_insert": _insert,
    "memory_replace": _replace,
    "memory_rethink": _rethink,
}


class AgentTools:
    """Runs the agent's tool calls server-side against the store and the search service."""

    schemas = TOOL_SCHEMAS

    def __init__(self, service: ConversationService) -> None:
        self.service = service

    async def execute(
        self, agent_id: str, name: str, arguments: str, *, changed_by: ChangedBy | None = None
    ) -> ToolResult:
        """Run one tool call; never raises for the model's mistakes (they become an error result).
        `changed_by` (the conversation and run) goes into the memory history with an edit."""
        try:
            args = self._parse(name, arguments)
            if name == "conversation_search":
                return ToolResult(await self._search(agent_id, args), True)
            block = await self.service.store.edit_block_value(
                agent_id,
                args.label,
                EDITS[name](args),
                changed_by=changed_by,
                keep=self.service.settings.memory_history_limit,
            )
            return ToolResult(
                f"OK: memory block {block.label!r} updated ({len(block.value)}/{block.limit} characters). "
                "Your core memory in the system message shows the new value from the next step.",
                True,
            )
        except ToolFailure as e:
            return ToolResult(f"Error: {e}", False)
        except ConversationsError as e:
            return ToolResult(f"Error: {e.message}", False)

    @staticmethod
    def _parse(name: str, arguments: str) -> Any:
        model = ARGUMENTS.get(name)
        if model is None:
            raise ToolFailure(f"unknown tool {name!r}; available: {', '.join(ARGUMENTS)}")
        try:
            raw = json.loads(arguments) if arguments and arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise ToolFailure(f"arguments are not valid JSON ({e.msg}); send a JSON object") from None
        if not isinstance(raw, dict):
            raise ToolFailure("arguments must be a JSON object")
        try:
            return model.model_validate(raw)
        except PydanticValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in e.errors())
            raise ToolFailure(f"bad arguments for {name}: {problems}") from None

    async def _search(self, agent_id: str, args: ConversationSearch) -> str:
        found = await self.service.search(
            args.query,
            agent_id=agent_id,
            roles=list(args.roles) if args.roles else None,
            start_date=args.start_date,
            end_date=args.end_date,
            limit=args.limit or 10,
        )
        if not found.results:
            return "No matching messages."
        rows = [
            {
                "conversation_id": r.conversation_id,
                "role": r.role,
                "created_at": r.created_at,
                "content": (r.content or "")[:RESULT_CHARS],
            }
            for r in found.results
        ]
        return json.dumps(rows, ensure_ascii=False)
