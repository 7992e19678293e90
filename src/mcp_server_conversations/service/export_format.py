"""The conversation export format: its pydantic models, the reading of an export (every check that
names what is wrong), and the markdown transcript.

An export is written as a stream of JSON pieces (service/portability.py): the models here describe
its shape, and parse it back on import. `format_version` names the layout; an import refuses any
other."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ValidationError
from ..inputs import MAX_DEPTH, check_value
from ..models import Block, Conversation, Message, MessageType, Role, RunStatus, StopReason, ToolCall, Usage
from ..util import to_iso

FORMAT_VERSION = "mcp-server-conversations/conversation/1"
MAX_EXPORT_MESSAGES = 5_000  # per MCP tool result (one JSON-RPC message); larger: the streamed REST export
MAX_IMPORT_MESSAGES = 50_000  # per import, whatever the transport
MAX_IMPORT_CHARS = 64 * 1024 * 1024  # an import given as JSON text
ID_MAX = 200


class ExportedAgent(BaseModel):
    """The conversation's agent at export time (a new agent is made from it when the import has none)."""

    id: str
    name: str
    model: str | None = None
    system: str
    context_window_limit: int | None = None


class ExportedRun(BaseModel):
    """A run that wrote messages of the conversation."""

    id: str
    model: str | None = None
    status: RunStatus
    stop_reason: StopReason | None = None
    usage: Usage | None = None
    error: str | None = None
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None


class ConversationExportData(BaseModel):
    """A whole conversation: what `import_conversation` takes back."""

    format_version: str = Field(description=f"The layout of this export: {FORMAT_VERSION}")
    exported_at: str
    conversation: Conversation
    agent: ExportedAgent
    blocks: list[Block] = Field(description="The agent's memory blocks at export time")
    messages: list[Message] = Field(description="The whole history as list_messages shows it, system message first")
    context_message_ids: list[str] = Field(description="The context window in prompt order, system message first")
    runs: list[ExportedRun]


class ConversationExport(BaseModel):
    """export_conversation's result: `data` (format json) or `markdown` (format markdown)."""

    format: Literal["json", "markdown"]
    conversation_id: str
    message_count: int = Field(description="Messages exported (the system message included)")
    # An untyped object in the tool's output schema (every tool's schema is listed at once; this one's layout,
    # ConversationExportData, would double its size): described in docs/portability.md.
    data: dict[str, Any] | None = Field(
        default=None,
        description="The export (format_version, conversation, agent, blocks, messages, "
        "context_message_ids in prompt order, runs): what import_conversation takes",
    )
    markdown: str | None = None


class ImportedConversationResult(BaseModel):
    """import_conversation's result."""

    conversation: Conversation
    agent_id: str
    agent_created: bool = Field(description="True when the export's agent was made anew (it was not on this server)")
    messages: int = Field(description="Messages imported (without the system message, which is made anew)")
    runs: int
    context_messages: int = Field(description="Messages in the context window after the system message")


# -- reading an export --

_STRICT = ConfigDict(extra="ignore", strict=True)


class _InMessage(BaseModel):
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=ID_MAX)
    message_type: MessageType
    role: Role
    content: str | None = None
    created_at: str
    run_id: str | None = Field(default=None, min_length=1, max_length=ID_MAX)
    is_err: bool = False
    model: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    status: Literal["success", "error", "requires_approval"] | None = None


class _InRun(ExportedRun):  # the exported layout, read strictly
    model_config = _STRICT
    id: str = Field(min_length=1, max_length=ID_MAX)


class _InAgent(ExportedAgent):
    model_config = _STRICT


class _InBlock(BaseModel):
    model_config = _STRICT
    label: str
    value: str
    description: str | None = None
    limit: int
    read_only: bool = False


class _InConversation(BaseModel):
    model_config = _STRICT
    summary: str | None = None
    model: str | None = None
    last_run_completion: str | None = None


class ParsedExport(BaseModel):
    """An export as read back: shapes checked; meaning (ids, order) is checked by `check_references`."""

    model_config = _STRICT
    format_version: str
    conversation: _InConversation
    agent: _InAgent
    blocks: list[_InBlock]
    messages: list[_InMessage] = Field(max_length=MAX_IMPORT_MESSAGES)
    context_message_ids: list[str]
    runs: list[_InRun]


def load_text(text: str) -> Any:
    """Import data given as JSON text: within the size limit, parsed, and free of hostile values."""
    if len(text) > MAX_IMPORT_CHARS:
        raise ValidationError("data", f"{len(text)} characters is over the import limit of {MAX_IMPORT_CHARS}")
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValidationError("data", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as e:
        raise ValidationError("data", f"not valid JSON ({e.msg} at character {e.pos})") from None
    except ValueError:
        raise ValidationError("data", "not valid JSON") from None
    check_value("data", data)
    return data


def parse_export(data: Any) -> ParsedExport:
    """The export given as an object or its JSON text, checked for shape; ValidationError naming the
    first wrong place (`data.messages[3].created_at: …`) otherwise."""
    if isinstance(data, str):
        data = load_text(data)
    if not isinstance(data, dict):
        raise ValidationError("data", "must be an export object (what export_conversation returns in `data`)")
    if "format_version" not in data and isinstance(data.get("data"), dict):
        data = data["data"]  # the whole export_conversation result was passed
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        shown = repr(version)[:80] if isinstance(version, str) else "missing"
        raise ValidationError(
            "data.format_version", f"{shown} is not a known layout; this server reads {FORMAT_VERSION}"
        )
    try:
        return ParsedExport.model_validate(data)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise ValidationError(where, first["msg"]) from None


def timestamp(field: str, value: str) -> str:
    """An ISO 8601 time as this server stores it (UTC, microseconds, `Z`: sorts as text)."""
    try:
        return to_iso(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, OverflowError):
        raise ValidationError(field, f"{value[:40]!r} is not an ISO 8601 time") from None


def check_references(parsed: ParsedExport) -> None:
    """Ids unique, the context made of the file's messages, run ids naming the file's runs."""
    seen: set[str] = set()
    for i, m in enumerate(parsed.messages):
        if m.id in seen:
            raise ValidationError(f"data.messages[{i}].id", f"{m.id!r} appears twice; message ids are unique")
        seen.add(m.id)
        if m.message_type == "tool_call_message" and not m.tool_calls:
            raise ValidationError(f"data.messages[{i}].tool_calls", "a tool_call_message needs its tool calls")
    runs: set[str] = set()
    for i, r in enumerate(parsed.runs):
        if r.id in runs:
            raise ValidationError(f"data.runs[{i}].id", f"{r.id!r} appears twice; run ids are unique")
        runs.add(r.id)
    for i, m in enumerate(parsed.messages):
        if m.run_id is not None and m.run_id not in runs:
            raise ValidationError(f"data.messages[{i}].run_id", f"{m.run_id!r} names no run in data.runs")
    in_context: set[str] = set()
    for i, cid in enumerate(parsed.context_message_ids):
        if cid not in seen:
            raise ValidationError(
                f"data.context_message_ids[{i}]", f"{cid[:ID_MAX]!r} names no message in data.messages"
            )
        if cid in in_context:
            raise ValidationError(f"data.context_message_ids[{i}]", f"{cid!r} appears twice")
        in_context.add(cid)
    labels: set[str] = set()
    for i, b in enumerate(parsed.blocks):
        if b.label in labels:
            raise ValidationError(f"data.blocks[{i}].label", f"{b.label!r} appears twice; labels are unique")
        labels.add(b.label)


# -- markdown --


def markdown_head(conversation: Conversation, agent_name: str) -> str:
    title = conversation.summary or conversation.id
    lines = [
        f"# {title}",
        "",
        f"- conversation: `{conversation.id}`",
        f"- agent: {agent_name} (`{conversation.agent_id}`)",
        f"- created: {conversation.created_at}",
        f"- messages: {conversation.message_count}",
        "",
    ]
    return "\n".join(lines) + "\n"


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text}\n{ticks}"


def markdown_message(m: Message) -> str:
    """One message as a section of the transcript."""
    t = m.message_type
    who = {
        "user_message": "User",
        "assistant_message": "Assistant",
        "reasoning_message": "Assistant (reasoning)",
        "tool_call_message": "Assistant (tool call)",
        "tool_return_message": "Tool",
        "summary_message": "Summary of earlier messages",
        "system_message": "System",
    }[t]
    marks = [m.created_at]
    if not m.in_context:
        marks.append("out of context")
    if m.is_err:
        marks.append("failed turn")
    parts = [f"### {who} · {' · '.join(marks)}", ""]
    if t == "reasoning_message":
        text = m.reasoning or m.content or ""
        parts.append("\n".join("> " + line for line in text.splitlines()) or ">")
    elif t == "tool_call_message":
        if m.content:
            parts += [m.content, ""]
        for c in m.tool_calls or []:
            parts += [f"`{c.name}` (`{c.tool_call_id}`)", _fence(c.arguments, "json"), ""]
    elif t == "tool_return_message":
        parts += [f"returned ({m.status or 'success'}) for `{m.tool_call_id or ''}`", _fence(m.content or "")]
    elif t == "system_message":
        parts.append(_fence(m.content or ""))
    else:
        parts.append(m.content or "")
    return "\n".join(parts).rstrip() + "\n\n"


__all__ = [
    "FORMAT_VERSION",
    "MAX_EXPORT_MESSAGES",
    "MAX_IMPORT_MESSAGES",
    "ConversationExport",
    "ConversationExportData",
    "ExportedAgent",
    "ExportedRun",
    "ImportedConversationResult",
    "ParsedExport",
    "check_references",
    "markdown_head",
    "markdown_message",
    "parse_export",
    "timestamp",
]
