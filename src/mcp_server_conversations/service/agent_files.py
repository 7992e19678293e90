"""Letta agent files (`.af`): reading one into what this server stores, and writing one from an agent.

Letta's messages carry several parts (reasoning, text, tool calls) that this server stores as one
row each; they are mapped as Letta's own API lists them. A Letta file has no runs: each user turn
becomes a run here (completed), so a step's text and tool calls stay one model message in prompts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ValidationError
from ..models import Conversation
from ..runs.agent_tools import ARGUMENTS
from ..runs.memory import DEFAULT_BLOCK_LIMIT, DEFAULT_SYSTEM, check_label
from ..runs.prompt import SUMMARY_PREFIX
from ..storage import NewMessage
from ..util import new_id, now_iso
from .conversations import ConversationService, check_handle, check_window
from .export_format import MAX_IMPORT_MESSAGES, load_text, timestamp

LEGACY_SEND = "send_message"  # Letta's older agents answer through this tool; its message is the answer
OUR_TOOLS = set(ARGUMENTS) | {LEGACY_SEND}


class Skipped(BaseModel):
    """What the file holds that this server does not run or hold (nothing of it is imported)."""

    tools: list[str] = Field(default_factory=list, description="Tools by name (Letta built-ins matching ours excepted)")
    tool_rules: list[dict[str, str | None]] = Field(default_factory=list, description="{tool_name, type}")
    sources: list[str] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list, description="Other agents of the file (only the first is imported)")
    groups: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    mcp_servers: list[str] = Field(default_factory=list)
    blocks: list[str] = Field(default_factory=list, description="Labels of blocks attached to no agent")
    messages: int = Field(default=0, description="Letta messages with nothing to keep (e.g. send_message's returns)")


class RaisedLimit(BaseModel):
    label: str
    limit: int = Field(description="The file's limit")
    new_limit: int = Field(description="The limit now: the value's length, so the value is kept whole")


class AgentImport(BaseModel):
    """import_agent's result."""

    agent: dict[str, Any] = Field(description="The new agent, as get_agent shows it")  # untyped: a lean schema
    conversation: Conversation = Field(description="The agent's message history (its default conversation)")
    messages: int
    context_messages: int
    raised_limits: list[RaisedLimit]
    skipped: Skipped


@dataclass
class Plan:
    name: str
    system: str
    model: str | None
    context_window_limit: int | None
    blocks: list[dict[str, Any]]
    messages: list[NewMessage] = field(default_factory=list)
    context: list[int] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    summary: str | None = None
    letta: dict[str, Any] = field(default_factory=dict)  # description and tags, kept as Letta clients set them
    last_run_completion: str | None = None
    raised_limits: list[RaisedLimit] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)


# -- the parts of Letta's schema read here (everything else in the file is ignored) --

_LOOSE = ConfigDict(extra="ignore")


class _Function(BaseModel):
    model_config = _LOOSE
    name: str
    arguments: str = ""


class _ToolCall(BaseModel):
    model_config = _LOOSE
    id: str
    function: _Function


class _ToolReturn(BaseModel):
    model_config = _LOOSE
    tool_call_id: Any = None
    status: str = "success"
    func_response: Any = None


class _Message(BaseModel):
    model_config = _LOOSE
    id: str
    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[_ToolCall] | None = None
    tool_call_id: str | None = None
    tool_returns: list[_ToolReturn] | None = None
    created_at: str | None = None
    model: str | None = None


class _LlmConfig(BaseModel):
    model_config = _LOOSE
    handle: str | None = None
    context_window: int | None = None


class _Agent(BaseModel):
    model_config = _LOOSE
    id: str
    name: str | None = None
    system: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    model: str | None = None
    llm_config: _LlmConfig | None = None
    context_window_limit: int | None = None
    block_ids: list[str] | None = None
    tool_ids: list[str] | None = None
    tool_rules: list[dict[str, Any]] | None = None
    messages: list[_Message] = Field(default_factory=list, max_length=MAX_IMPORT_MESSAGES)
    in_context_message_ids: list[str]


class _Block(BaseModel):
    model_config = _LOOSE
    id: str
    label: str
    value: str | None = ""
    limit: int | None = None
    read_only: bool = False
    description: str | None = None


class _File(BaseModel):
    model_config = _LOOSE
    agents: list[_Agent] = Field(min_length=1)
    blocks: list[_Block] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    groups: list[dict[str, Any]] = Field(default_factory=list)
    sources: list[dict[str, Any]] = Field(default_factory=list)
    files: list[dict[str, Any]] = Field(default_factory=list)
    skills: list[dict[str, Any]] = Field(default_factory=list)
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)


def _load(data: Any) -> dict[str, Any]:
    for _ in range(2):  # Letta's route accepts text JSON-encoded twice; so does this one
        if not isinstance(data, str):
            break
        data = load_text(data)
    if not isinstance(data, dict):
        raise ValidationError("data", "must be a Letta agent file: a JSON object with an `agents` list")
    agents = data.get("agents")
    first = agents[0] if isinstance(agents, list) and agents and isinstance(agents[0], dict) else None
    if "agents" not in data and ("core_memory" in data or "messages" in data or "agent_type" in data):
        raise _legacy()
    if first is not None and "in_context_message_ids" not in first:
        raise _legacy()
    return data


def _legacy() -> ValidationError:
    return ValidationError(
        "data",
        "this is Letta's legacy agent file layout (one agent at the top level, without in_context_message_ids), "
        "which Letta itself no longer imports; re-export the agent from a current Letta server",
    )


def read(data: Any, name: str | None, service: ConversationService) -> Plan:
    """The file checked and mapped; ValidationError naming the first wrong place otherwise."""
    raw = _load(data)
    try:
        f = _File.model_validate(raw)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise ValidationError(where, first["msg"]) from None
    a = f.agents[0]
    at = "data.agents[0]"
    llm = a.llm_config or _LlmConfig()
    model = check_handle(f"{at}.model", a.model or llm.handle)
    window = a.context_window_limit or llm.context_window
    check_window(window)
    system = a.system if a.system and a.system.strip() else DEFAULT_SYSTEM
    service.check_text(f"{at}.system", system)
    plan = Plan(
        name=service.check_name(name if name is not None else (a.name or "imported agent")),
        system=system,
        model=model,
        context_window_limit=window,
        blocks=[],
        summary=a.name,
        letta=service.check_letta_fields({"description": a.description, "tags": a.tags or []}),
    )
    _blocks(f, a, plan, service)
    _skips(f, a, plan)
    _messages(a, plan, service)
    return plan


def _blocks(f: _File, a: _Agent, plan: Plan, service: ConversationService) -> None:
    by_id = {b.id: b for b in f.blocks}
    labels: set[str] = set()
    for i, block_id in enumerate(a.block_ids or []):
        b = by_id.get(block_id)
        if b is None:
            raise ValidationError(f"data.agents[0].block_ids[{i}]", f"{block_id[:200]!r} names no block in data.blocks")
        where = f"data.blocks[{f.blocks.index(b)}]"
        try:
            check_label(b.label)
        except ValidationError as e:
            raise ValidationError(f"{where}.label", e.message.split(": ", 1)[1]) from None
        if b.label in labels:
            raise ValidationError(f"{where}.label", f"{b.label!r} is attached twice; labels are unique per agent")
        labels.add(b.label)
        value = b.value or ""
        service.check_text(f"{where}.value", value, allow_empty=True)
        limit = b.limit if b.limit and b.limit > 0 else DEFAULT_BLOCK_LIMIT
        if len(value) > limit:
            plan.raised_limits.append(RaisedLimit(label=b.label, limit=limit, new_limit=len(value)))
            limit = len(value)
        plan.blocks.append(
            {"label": b.label, "value": value, "limit": limit, "read_only": b.read_only, "description": b.description}
        )


def _skips(f: _File, a: _Agent, plan: Plan) -> None:
    s = plan.skipped
    s.tools = [str(t.get("name")) for t in f.tools if t.get("name") not in OUR_TOOLS]
    s.tool_rules = [{"tool_name": r.get("tool_name"), "type": r.get("type")} for r in a.tool_rules or []]
    s.sources = [str(x.get("name") or x.get("id")) for x in f.sources]
    s.files = [str(x.get("file_name") or x.get("id")) for x in f.files]
    s.agents = [f"{x.name or ''} ({x.id})".strip() for x in f.agents[1:]]
    s.groups = [
        f"{g.get('id')} ({(g.get('manager_config') or {}).get('manager_type', 'round_robin')})" for g in f.groups
    ]
    s.skills = [str(x.get("name")) for x in f.skills]
    s.mcp_servers = [str(x.get("server_name") or x.get("id")) for x in f.mcp_servers]
    attached = {b for x in f.agents for b in x.block_ids or []}
    attached |= {b for g in f.groups for b in g.get("shared_block_ids") or []}
    s.blocks = [b.label for b in f.blocks if b.id not in attached]


def _parts(content: str | list[dict[str, Any]] | None, kind: str) -> str | None:
    if isinstance(content, str):
        return content if kind == "text" else None
    key = "reasoning" if kind == "reasoning" else "text"
    texts = [str(p.get(key) or "") for p in content or [] if isinstance(p, dict) and p.get("type") == kind]
    return "\n\n".join(texts) if texts else None


def _messages(a: _Agent, plan: Plan, service: ConversationService) -> None:
    """Letta's messages as rows, in the file's order; the context from in_context_message_ids."""
    rows_of: dict[str, list[int]] = {}
    sends: set[str] = set()  # call ids of send_message: their returns say nothing
    run: dict[str, Any] | None = None
    system_ids = set(a.in_context_message_ids[:1])
    for i, m in enumerate(a.messages):
        at = f"data.agents[0].messages[{i}]"
        when = timestamp(f"{at}.created_at", m.created_at) if m.created_at else now_iso()
        new: list[NewMessage] = []
        text: str | None
        role = "tool" if m.role == "function" else m.role
        if role == "system":
            if m.id in system_ids or i == 0:
                rows_of[m.id] = []  # the system message is compiled anew from the agent
                continue
            new.append(NewMessage("system_message", "system", content=_parts(m.content, "text") or ""))
        elif role == "user":
            text = _parts(m.content, "text") or ""
            if text.startswith(SUMMARY_PREFIX):
                new.append(NewMessage("summary_message", "system", content=text.removeprefix(SUMMARY_PREFIX)))
            else:
                new.append(NewMessage("user_message", "user", content=text))
            run = None  # a user message opens a turn
        elif role in ("assistant", "approval"):
            reasoning = _parts(m.content, "reasoning")
            text = _parts(m.content, "text")
            if reasoning and role == "assistant":
                new.append(NewMessage("reasoning_message", "assistant", reasoning=reasoning, model=m.model))
            if text and role == "assistant":
                new.append(NewMessage("assistant_message", "assistant", content=text, model=m.model))
            calls = []
            for c in m.tool_calls or []:
                if c.function.name == LEGACY_SEND:
                    sends.add(c.id)
                    new.append(NewMessage("assistant_message", "assistant", content=_sent(c), model=m.model))
                else:
                    calls.append({"tool_call_id": c.id, "name": c.function.name, "arguments": c.function.arguments})
            if calls:
                new.append(NewMessage("tool_call_message", "assistant", tool_calls=calls, model=m.model))
        elif role == "tool":
            call_id = m.tool_call_id or (str(m.tool_returns[0].tool_call_id) if m.tool_returns else None)
            if call_id not in sends:
                ret = m.tool_returns[0] if m.tool_returns else None
                text = _parts(m.content, "text")
                if text is None and ret is not None and isinstance(ret.func_response, str):
                    text = ret.func_response
                status = "error" if ret is not None and ret.status == "error" else "success"
                new.append(
                    NewMessage("tool_return_message", "tool", content=text or "", tool_call_id=call_id, status=status)
                )
        if not new:
            plan.skipped.messages += 1
            rows_of[m.id] = []
            continue
        if run is None:
            run = {"id": new_id("run"), "model": None, "status": "completed", "created_at": when, "started_at": when}
            plan.runs.append(run)
        run["completed_at"] = when
        run["model"] = run["model"] or m.model
        rows_of[m.id] = []
        for n in new:
            for text in (n.content, n.reasoning):
                if text is not None:
                    service.check_text(f"{at}.content", text, allow_empty=True)
            n.id, n.created_at, n.run_id = new_id("message"), when, run["id"]
            rows_of[m.id].append(len(plan.messages))
            plan.messages.append(n)
    for i, message_id in enumerate(a.in_context_message_ids):
        if message_id not in rows_of:
            raise ValidationError(
                f"data.agents[0].in_context_message_ids[{i}]", f"{message_id[:200]!r} names no message of the agent"
            )
        plan.context += rows_of[message_id]
    if plan.runs:
        plan.last_run_completion = plan.runs[-1]["completed_at"]


def _sent(call: _ToolCall) -> str:
    try:
        args = json.loads(call.function.arguments or "{}")
    except ValueError:
        return call.function.arguments
    message = args.get("message") if isinstance(args, dict) else None
    return message if isinstance(message, str) else call.function.arguments
