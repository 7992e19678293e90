"""The conversation service: every operation the MCP tools and the REST API expose,
validated once here. Tools and routes translate and delegate; SQL stays in storage."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

from .. import principals
from ..config import Settings
from ..errors import NotFoundError, ValidationError, VersionConflictError
from ..models import MAX_PAGE, Agent, AgentList, Block, BlockHistory, ChangedBy, Conversation, ConversationList, Deleted
from ..runs.memory import DEFAULT_BLOCK_LIMIT, DEFAULT_SYSTEM, check_block, check_label, compile_system
from ..storage import Store
from ..util import decode_cursor, encode_cursor
from . import memory_history
from .base import NAME_MAX, UNSET, check_handle, check_limit, check_unicode, check_window
from .history import HistoryService
from .memory_history import check_expected_version

if TYPE_CHECKING:
    from ..search.hybrid import EmbeddingIndex
    from ..search.rerank import Reranker


class ConversationService(HistoryService):
    """Agents, memory blocks, conversations, history and search over one store."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        hybrid: EmbeddingIndex | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        super().__init__(store, settings, hybrid, reranker)
        self._default_conversation_lock = asyncio.Lock()  # one default conversation made per agent here

    # -- agents --

    async def create_agent(
        self,
        name: str,
        model: str | None = None,
        system: str | None = None,
        memory_blocks: list[dict[str, Any]] | None = None,
        context_window_limit: int | None = None,
        letta: dict[str, Any] | None = None,
        changed_by: ChangedBy | None = None,
    ) -> Agent:
        """`letta`: what only Letta clients set (description, tags, model_settings); see check_letta_fields.
        `changed_by`: what made it, for its blocks' first versions (default: the create_agent tool)."""
        name = self.check_name(name)
        letta = self.check_letta_fields(letta or {})
        model = check_handle("model", model)
        if system is not None:
            self.check_text("system", system, allow_empty=True)
        check_window(context_window_limit)
        blocks, labels = [], set()
        for i, b in enumerate(memory_blocks or []):
            label = str(b.get("label") or "")
            value = b.get("value") or ""
            limit = b.get("limit") or DEFAULT_BLOCK_LIMIT
            try:
                check_block(label, value, limit)
                self.check_text("value", value, allow_empty=True)
                if b.get("description") is not None:
                    self.check_text("description", b["description"], allow_empty=True)
            except ValidationError as e:
                raise ValidationError(f"memory_blocks[{i}].{e.field}", e.message.split(": ", 1)[1]) from None
            if label in labels:
                raise ValidationError(f"memory_blocks[{i}].label", f"duplicate label {label!r}; labels are unique")
            labels.add(label)
            blocks.append({**b, "label": label, "value": value, "limit": limit})
        return await self.store.create_agent(
            name=name,
            model=model,
            system=system if system is not None else DEFAULT_SYSTEM,
            context_window_limit=context_window_limit,
            blocks=blocks,
            letta=letta,
            principal=principals.current(),
            changed_by=changed_by or {"tool": "create_agent"},
        )

    async def get_agent(self, agent_id: str) -> Agent:
        await self.owners.check("agent", agent_id)
        return await self.store.get_agent(agent_id)

    async def list_agents(
        self,
        limit: int = 50,
        after: str | None = None,
        *,
        order: Literal["asc", "desc"] = "asc",
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> AgentList:
        """A page of agents by creation. `after_id`/`before_id` are agent ids (Letta's cursors):
        the page holds the agents right after / right before that one in `order`."""
        check_limit(limit, MAX_PAGE)
        if order not in ("asc", "desc"):
            raise ValidationError("order", "use asc or desc")
        desc = order == "desc"
        key = stop = None
        if after:
            key = tuple(decode_cursor(after, key=(str, str), kind="agents", order=order)["k"])
        if after_id:
            a = await self._agent_cursor("after", after_id)
            key = (a.created_at, a.id)
        if before_id:
            b = await self._agent_cursor("before", before_id)
            stop = (b.created_at, b.id)
            if not after_id:  # the page nearest the cursor, walked backwards, then put in order
                agents = await self.store.list_agents(limit, stop, desc=not desc, principal=principals.current())
                return AgentList(agents=list(reversed(agents)), next_cursor=None)
        agents = await self.store.list_agents(limit + 1, key, desc=desc, principal=principals.current())
        if stop is not None:
            agents = [a for a in agents if ((a.created_at, a.id) > stop if desc else (a.created_at, a.id) < stop)]
        cursor = None
        if len(agents) > limit:
            agents = agents[:limit]
            cursor = encode_cursor({"kind": "agents", "order": order, "k": [agents[-1].created_at, agents[-1].id]})
        return AgentList(agents=agents, next_cursor=cursor)

    async def _agent_cursor(self, field: str, agent_id: str) -> Agent:
        try:
            return await self.get_agent(agent_id)
        except NotFoundError:
            raise ValidationError(field, f"agent {agent_id} not found; pass an agent id from a previous page") from None

    async def update_agent(self, agent_id: str, **fields: Any) -> Agent:
        fields = {k: v for k, v in fields.items() if v is not UNSET}
        if "name" in fields:
            fields["name"] = self.check_name(fields["name"])
        if "model" in fields:
            fields["model"] = check_handle("model", fields["model"])
        if "system" in fields:
            if fields["system"] is None:
                fields["system"] = DEFAULT_SYSTEM
            self.check_text("system", fields["system"], allow_empty=True)
        check_window(fields.get("context_window_limit"))
        fields.update(self.check_letta_fields(fields))
        await self.owners.check("agent", agent_id)
        return await self.store.update_agent(agent_id, fields)

    def check_letta_fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """description (text), tags (a list of distinct strings, order kept), model_settings (an object)."""
        out: dict[str, Any] = {}
        if fields.get("description") is not None:
            out["description"] = self.check_text("description", fields["description"], allow_empty=True)
        elif "description" in fields:
            out["description"] = None
        if "tags" in fields:
            tags = fields["tags"] or []
            for i, t in enumerate(tags):
                if not isinstance(t, str) or not t.strip() or len(t) > NAME_MAX:
                    raise ValidationError(f"tags[{i}]", f"a tag is 1-{NAME_MAX} characters of text")
                self.check_text(f"tags[{i}]", t)
            out["tags"] = list(dict.fromkeys(tags))
        if "model_settings" in fields:
            settings = fields["model_settings"]
            if settings is not None and not isinstance(settings, dict):
                raise ValidationError("model_settings", "must be an object")
            out["model_settings"] = settings
        return out

    async def default_conversation(self, agent_id: str) -> Conversation:
        """The agent's default conversation (Letta's `conversation_id=default`), made on first use."""
        agent = await self.get_agent(agent_id)
        if agent.default_conversation_id is not None:
            try:
                return await self.store.get_conversation(agent.default_conversation_id)
            except NotFoundError:  # deleted: a new one takes its place
                pass
        async with self._default_conversation_lock:
            made = await self.store.create_conversation(
                agent.id, model=None, summary=None, system_text=compile_system(agent)
            )
            winner = await self.store.claim_default_conversation(agent.id, made.id)
            if winner != made.id:  # another process made it first
                await self.store.delete_conversation(made.id)
            return await self.store.get_conversation(winner)

    async def delete_agent(self, agent_id: str) -> Deleted:
        await self.owners.check("agent", agent_id)
        await self.store.delete_agent(agent_id)
        return Deleted(id=agent_id)

    async def update_memory_block(
        self,
        agent_id: str | None,
        label: str,
        *,
        expected_version: int | None = None,
        changed_by: ChangedBy | None = None,
        **fields: Any,
    ) -> Block:
        """Create or change a block. With `expected_version`, only if the block is at that version (0: only
        if it does not exist yet); otherwise VersionConflictError naming the current one."""
        check_label(label)
        check_expected_version(expected_version)
        fields = {k: v for k, v in fields.items() if v is not UNSET}
        for name in ("value", "description"):
            if fields.get(name) is not None:
                self.check_text(name, fields[name], allow_empty=True)
        if fields.get("limit") is not None and fields["limit"] < 1:
            raise ValidationError("limit", f"must be at least 1 (got {fields['limit']})")
        agent_id = await self.resolve_agent(agent_id)

        def merge(current: Block | None, given: dict[str, Any]) -> dict[str, Any]:
            base = (
                current.model_dump()
                if current
                else {
                    "value": "",
                    "description": None,
                    "limit": DEFAULT_BLOCK_LIMIT,
                    "read_only": False,
                }
            )
            if expected_version is not None and expected_version != (current.version if current else 0):
                raise VersionConflictError(label, current.version if current else 0, expected_version)
            new = {**base}
            for k, v in given.items():
                if v is None and k in ("value", "limit", "read_only"):
                    v = {"value": "", "limit": DEFAULT_BLOCK_LIMIT, "read_only": False}[k]
                new[k] = v
            check_block(label, new["value"], new["limit"])
            return new

        return await self.store.upsert_block(
            agent_id,
            label,
            fields,
            merge,
            changed_by=changed_by or {"tool": "update_memory_block"},
            keep=self.settings.memory_history_limit,
        )

    async def memory_block_history(
        self, agent_id: str | None, label: str, limit: int = 50, after: str | None = None
    ) -> BlockHistory:
        return await memory_history.block_history(self, agent_id, label, limit, after)

    async def restore_memory_block(
        self, agent_id: str | None, label: str, version: int, changed_by: ChangedBy | None = None
    ) -> Block:
        return await memory_history.restore_block(self, agent_id, label, version, changed_by)

    async def get_block(self, agent_id: str | None, label: str) -> Block:
        agent_id = await self.resolve_agent(agent_id)
        found = await self.store.get_block(agent_id, label)
        if found is None:
            raise NotFoundError("block", label)
        return found

    async def get_block_by_id(self, block_id: str) -> tuple[str, Block]:
        """The block with this id and the id of its agent."""
        await self.owners.check("block", block_id)
        return await self.store.get_block_by_id(block_id)

    # -- conversations --

    async def create_conversation(
        self, agent_id: str | None = None, model: str | None = None, summary: str | None = None
    ) -> Conversation:
        model = check_handle("model", model)
        if summary is not None:
            self.check_text("summary", summary, allow_empty=True)
        # One read: that the agent exists, and what its system prompt is (made on first use for the default).
        agent = await (
            self.get_agent(agent_id) if agent_id is not None else self.store.default_agent(principals.current())
        )
        if agent is None:
            agent = await self.store.get_agent(await self.resolve_agent(None))
        return await self.store.create_conversation(
            agent.id, model=model, summary=summary, system_text=compile_system(agent)
        )

    async def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation:
        fields = {k: v for k, v in fields.items() if v is not UNSET}
        if "model" in fields:
            fields["model"] = check_handle("model", fields["model"])
        if fields.get("summary") is not None:
            self.check_text("summary", fields["summary"], allow_empty=True)
        await self.owners.check("conversation", conversation_id)
        return await self.store.update_conversation(conversation_id, fields)

    async def list_conversations(
        self,
        agent_id: str | None = None,
        order_by: Literal["created_at", "last_run_completion"] = "created_at",
        order: Literal["asc", "desc"] = "desc",
        limit: int = 50,
        after: str | None = None,
        *,
        after_id: str | None = None,
    ) -> ConversationList:
        """A page of the agent's conversations; `after_id` is a conversation id (Letta's cursor)."""
        check_limit(limit, MAX_PAGE)
        if order_by not in ("created_at", "last_run_completion"):
            raise ValidationError("order_by", "use created_at or last_run_completion")
        if order not in ("asc", "desc"):
            raise ValidationError("order", "use asc or desc")
        agent_id = await self.resolve_agent(agent_id)
        key = None
        if after:
            key = decode_cursor(
                after,
                key=((str, type(None)), str),
                kind="conversations",
                order_by=order_by,
                order=order,
                agent=agent_id,
            )["k"]
        if after_id:
            try:
                last = await self.get_conversation(after_id)
            except NotFoundError:
                raise ValidationError(
                    "after", f"conversation {after_id} not found; pass an id from a previous page"
                ) from None
            if last.agent_id != agent_id:
                raise ValidationError("after", f"conversation {after_id} belongs to another agent")
            key = [getattr(last, order_by), last.id]
        convs = await self.store.list_conversations(
            agent_id, order_by=order_by, desc=order == "desc", limit=limit + 1, after=key
        )
        cursor = None
        if len(convs) > limit:
            convs = convs[:limit]
            last = convs[-1]
            cursor = encode_cursor(
                {
                    "kind": "conversations",
                    "order_by": order_by,
                    "order": order,
                    "agent": agent_id,
                    "k": [getattr(last, order_by), last.id],
                }
            )
        return ConversationList(conversations=convs, next_cursor=cursor)

    async def fork_conversation(self, conversation_id: str, message_id: str | None = None) -> Conversation:
        src = await self.get_conversation(conversation_id)
        return await self.store.fork_conversation(conversation_id, message_id, await self.system_text(src.agent_id))

    async def delete_conversation(self, conversation_id: str) -> Deleted:
        await self.owners.check("conversation", conversation_id)
        await self.store.delete_conversation(conversation_id)
        return Deleted(id=conversation_id)


__all__ = ["ConversationService", "NotFoundError", "UNSET", "NAME_MAX", "check_handle", "check_unicode"]
