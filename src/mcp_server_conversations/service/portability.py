"""Export and import: a conversation as JSON (or a markdown transcript), and agents as Letta agent
files (service/agent_files.py). Lookups go through the conversation service, so whatever scoping it
applies (which agents and conversations a caller may see) applies here too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from ..errors import NotFoundError, ValidationError
from ..models import UNFINISHED, Agent, Conversation, Message, Run
from ..runs.memory import compile_system
from ..storage import ImportedConversation, NewMessage
from ..util import new_id, new_ids, now_iso
from . import agent_file_writer, agent_files
from .conversations import ConversationService, check_handle
from .export_format import (
    FORMAT_VERSION,
    MAX_EXPORT_MESSAGES,
    MAX_IMPORT_MESSAGES,
    ConversationExport,
    ExportedAgent,
    ExportedRun,
    ImportedConversationResult,
    ParsedExport,
    check_references,
    markdown_head,
    markdown_message,
    parse_export,
    timestamp,
)

PAGE = 500  # history rows read per step of an export


class PortabilityService:
    """Conversations and agents in and out of this server."""

    def __init__(self, service: ConversationService) -> None:
        self.service = service
        self.store = service.store

    # -- conversations out --

    async def export_conversation(
        self, conversation_id: str, fmt: Literal["json", "markdown"] = "json"
    ) -> ConversationExport:
        """The whole export in one result, up to MAX_EXPORT_MESSAGES messages (a tool result is one
        message); longer conversations are exported by the streamed REST route."""
        conv = await self.service.get_conversation(conversation_id)
        if conv.message_count + 1 > MAX_EXPORT_MESSAGES:
            raise ValidationError(
                "conversation_id",
                f"the conversation has {conv.message_count} messages, over the limit of {MAX_EXPORT_MESSAGES} for "
                f"one tool result; download it streamed from GET /v1/conversations/{conversation_id}/export"
                f"?format={fmt} on the HTTP server, or fork a part of it and export that",
            )
        text = "".join([piece async for piece in self.export_stream(conversation_id, fmt, conv=conv)])
        if fmt == "markdown":
            return ConversationExport(
                format="markdown", conversation_id=conv.id, message_count=conv.message_count + 1, markdown=text
            )
        data = json.loads(text)
        return ConversationExport(
            format="json", conversation_id=conv.id, message_count=len(data["messages"]), data=data
        )

    async def export_stream(
        self, conversation_id: str, fmt: Literal["json", "markdown"] = "json", *, conv: Conversation | None = None
    ) -> AsyncIterator[str]:
        """The export as text pieces, its history read a page at a time (memory stays flat whatever the
        length). JSON: the messages come before the runs, which are collected as the messages name them."""
        if fmt not in ("json", "markdown"):
            raise ValidationError("format", f"{fmt!r} is not a format; use json or markdown")
        conv = conv or await self.service.get_conversation(conversation_id)
        agent = await self.service.get_agent(conv.agent_id)
        if fmt == "markdown":
            yield markdown_head(conv, agent.name)
            async for page in self._history(conv.id):
                yield "".join(markdown_message(m) for m in page)
            return
        context = [m.id for m in await self.store.context_messages(conv.id)]
        head = {
            "format_version": FORMAT_VERSION,
            "exported_at": now_iso(),
            "conversation": conv.model_dump(mode="json"),
            "agent": ExportedAgent.model_validate(agent.model_dump()).model_dump(mode="json"),
            "blocks": [b.model_dump(mode="json") for b in agent.memory_blocks],
            "context_message_ids": context,
        }
        yield json.dumps(head)[:-1] + ', "messages": ['
        run_ids: dict[str, None] = {}
        first = True
        async for page in self._history(conv.id):
            parts = []
            for m in page:
                if m.run_id is not None:
                    run_ids[m.run_id] = None
                parts.append(m.model_dump_json())
            if parts:
                yield ("" if first else ", ") + ", ".join(parts)
                first = False
        runs = await self._runs(conv.id, list(run_ids))
        yield '], "runs": [' + ", ".join(r.model_dump_json() for r in runs) + "]}"

    async def _history(self, conversation_id: str) -> AsyncIterator[list[Message]]:
        after = None
        while True:
            page = await self.service.list_messages(conversation_id, PAGE, after, include_system=True)
            yield page.messages
            if page.next_cursor is None:
                return
            after = page.next_cursor

    async def _runs(self, conversation_id: str, wanted: list[str]) -> list[ExportedRun]:
        """The runs the messages name: the conversation's own, and a fork's inherited ones."""
        own = await self.store.list_runs(
            conversation_id=conversation_id, agent_id=None, statuses=None, limit=MAX_IMPORT_MESSAGES, desc=False
        )
        by_id: dict[str, Run] = {r.id: r for r in own}
        out = []
        for run_id in wanted:
            run = by_id.get(run_id)
            if run is None:
                try:
                    run = await self.store.get_run(run_id, with_messages=False)
                except NotFoundError:  # its conversation was deleted: the messages keep no run
                    continue
            out.append(ExportedRun.model_validate(run.model_dump(exclude={"messages"})))
        return out

    # -- conversations in --

    async def import_conversation(self, data: Any, agent_id: str | None = None) -> ImportedConversationResult:
        """A new conversation from an export: new ids, everything else kept, its context as the source's.
        `agent_id` omitted: the export's agent if it is here, else a new agent made from the export."""
        parsed = parse_export(data)
        check_references(parsed)
        messages, context, runs = self._rows(parsed)
        conversation = parsed.conversation
        for field, value in (("conversation.summary", conversation.summary), ("agent.system", parsed.agent.system)):
            if value is not None:
                self.service.check_text(f"data.{field}", value, allow_empty=True)
        model = self._handle("data.conversation.model", conversation.model)
        last = None
        if conversation.last_run_completion is not None:
            last = timestamp("data.conversation.last_run_completion", conversation.last_run_completion)
        created = False
        if agent_id is not None:
            agent = await self.service.get_agent(await self.service.resolve_agent(agent_id))
        else:
            try:
                agent = await self.service.get_agent(parsed.agent.id)
            except NotFoundError:
                agent = await self._agent_from(parsed)
                created = True
        try:
            conv = await self.store.import_conversation(
                ImportedConversation(
                    agent_id=agent.id,
                    model=model,
                    summary=conversation.summary,
                    system_text=compile_system(agent),
                    last_run_completion=last,
                    messages=messages,
                    context=context,
                    runs=runs,
                )
            )
        except BaseException:
            if created:  # nothing stays of a failed import
                await self.store.delete_agent(agent.id)
            raise
        return ImportedConversationResult(
            conversation=conv,
            agent_id=agent.id,
            agent_created=created,
            messages=len(messages),
            runs=len(runs),
            context_messages=len(context),
        )

    def _handle(self, field: str, value: str | None) -> str | None:
        try:
            return check_handle(field, value)
        except ValidationError:
            raise ValidationError(field, f"{str(value)[:80]!r} is not a model handle (provider/model-name)") from None

    def _rows(self, parsed: ParsedExport) -> tuple[list[NewMessage], list[int], list[dict[str, Any]]]:
        """The export's messages, context positions and runs as rows with new ids."""
        run_map = {r.id: new_id("run") for r in parsed.runs}
        runs = []
        for i, r in enumerate(parsed.runs):
            at = f"data.runs[{i}]"
            status, stop = r.status, r.stop_reason
            if status in UNFINISHED:  # exported mid-run: here it will never end by itself
                status, stop = "interrupted", None
            usage = r.usage
            runs.append(
                {
                    "id": run_map[r.id],
                    "model": r.model,
                    "status": status,
                    "stop_reason": stop,
                    "prompt_tokens": usage.prompt_tokens if usage else None,
                    "completion_tokens": usage.completion_tokens if usage else None,
                    "total_tokens": usage.total_tokens if usage else None,
                    "error": r.error,
                    "created_at": timestamp(f"{at}.created_at", r.created_at),
                    "started_at": timestamp(f"{at}.started_at", r.started_at) if r.started_at else None,
                    "completed_at": timestamp(f"{at}.completed_at", r.completed_at) if r.completed_at else None,
                }
            )
        positions: dict[str, int] = {}
        messages: list[NewMessage] = []
        ids = iter(new_ids("message", len(parsed.messages)))
        for i, m in enumerate(parsed.messages):
            at = f"data.messages[{i}]"
            if m.message_type == "system_message":
                continue  # the conversation's system message is compiled anew from its agent
            for field in ("content", "reasoning"):
                value = getattr(m, field)
                if value is not None:
                    self.service.check_text(f"{at}.{field}", value, allow_empty=True)
            for j, call in enumerate(m.tool_calls or []):
                self.service.check_text(f"{at}.tool_calls[{j}].arguments", call.arguments, allow_empty=True)
            positions[m.id] = len(messages)
            messages.append(
                NewMessage(
                    message_type=m.message_type,
                    role=m.role,
                    content=m.content,
                    reasoning=m.reasoning,
                    tool_calls=[c.model_dump() for c in m.tool_calls] if m.tool_calls else None,
                    tool_call_id=m.tool_call_id,
                    status=m.status,
                    model=m.model,
                    run_id=run_map[m.run_id] if m.run_id else None,
                    is_err=m.is_err,
                    id=next(ids),
                    created_at=timestamp(f"{at}.created_at", m.created_at),
                )
            )
        context = [positions[i] for i in parsed.context_message_ids if i in positions]
        return messages, context, runs

    async def _agent_from(self, parsed: ParsedExport) -> Agent:
        a = parsed.agent
        return await self.service.create_agent(
            a.name,
            self._handle("data.agent.model", a.model),
            a.system,
            [b.model_dump() for b in parsed.blocks],
            a.context_window_limit,
        )

    # -- Letta agent files --

    async def import_agent(self, data: Any, name: str | None = None) -> agent_files.AgentImport:
        """A Letta agent file (`.af`) as a new agent with its history as a conversation."""
        plan = agent_files.read(data, name, self.service)
        agent = await self.service.create_agent(
            plan.name, plan.model, plan.system, plan.blocks, plan.context_window_limit, letta=plan.letta
        )
        try:
            conv = await self.store.import_conversation(
                ImportedConversation(
                    agent_id=agent.id,
                    model=None,
                    summary=plan.summary,
                    system_text=compile_system(agent),
                    last_run_completion=plan.last_run_completion,
                    messages=plan.messages,
                    context=plan.context,
                    runs=plan.runs,
                )
            )
            await self.store.claim_default_conversation(agent.id, conv.id)
        except BaseException:
            await self.store.delete_agent(agent.id)
            raise
        return agent_files.AgentImport(
            agent=(await self.service.get_agent(agent.id)).model_dump(mode="json"),
            conversation=await self.store.get_conversation(conv.id),
            messages=len(plan.messages),
            context_messages=len(plan.context),
            raised_limits=plan.raised_limits,
            skipped=plan.skipped,
        )

    async def export_agent(self, agent_id: str, conversation_id: str | None = None) -> dict[str, Any]:
        """An agent file of the agent, its blocks and one conversation (default: the most recently active)."""
        agent = await self.service.get_agent(agent_id)
        conv: Conversation | None = None
        if conversation_id is not None:
            conv = await self.service.get_conversation(conversation_id)
            if conv.agent_id != agent.id:
                raise ValidationError("conversation_id", f"conversation {conversation_id} belongs to another agent")
        else:
            listed = await self.service.list_conversations(agent.id, "last_run_completion", "desc", 1)
            conv = listed.conversations[0] if listed.conversations else None
        history: list[Message] = []
        context: list[str] = []
        if conv is not None:
            if conv.message_count + 1 > MAX_EXPORT_MESSAGES:
                raise ValidationError(
                    "conversation_id",
                    f"the conversation has {conv.message_count} messages, over the limit of {MAX_EXPORT_MESSAGES} "
                    "for an agent file; fork the part to keep and export that",
                )
            async for page in self._history(conv.id):
                history += page
            context = [m.id for m in await self.store.context_messages(conv.id)]
        return agent_file_writer.write(agent, history, context, self.service.settings.default_model)
