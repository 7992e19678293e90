"""The conversation service: every operation the MCP tools and the REST API expose,
validated once here. Tools and routes translate and delegate; SQL stays in storage."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Literal

from ..config import Settings
from ..errors import NotFoundError, ValidationError
from ..models import (
    MAX_PAGE,
    MAX_SEARCH_RESULTS,
    Agent,
    AgentList,
    Block,
    Conversation,
    ConversationList,
    Deleted,
    MessageList,
    SearchResult,
    SearchResults,
)
from ..runs.memory import DEFAULT_BLOCK_LIMIT, DEFAULT_BLOCKS, DEFAULT_SYSTEM, check_block, check_label, compile_system
from ..search import dates
from ..search.query import terms
from ..storage import MESSAGE_TYPES, Store
from ..util import check_date_range, decode_cursor, encode_cursor, parse_date_bound

if TYPE_CHECKING:
    from ..search.hybrid import EmbeddingIndex

HANDLE = re.compile(r"^[A-Za-z0-9_.\-]+/\S+$")
UNSET: Any = object()  # an omitted field in update_* calls (None means: clear it)
NAME_MAX = 200  # agent names: a display name, not a document


def check_handle(field: str, value: str | None) -> str | None:
    """A model handle must be `provider/model-name` (litellm's format)."""
    if value is None:
        return None
    if not isinstance(value, str) or not HANDLE.match(value.strip()) or value.strip().endswith("/"):
        raise ValidationError(
            field,
            f"{value!r} is not a model handle; use provider/model-name, e.g. openai/gpt-5-mini, "
            "anthropic/claude-haiku-4-5 or ollama/llama3.2",
        )
    return value.strip()


def check_unicode(field: str, value: str) -> None:
    """JSON can carry lone surrogates (\\ud800) that no UTF-8 database can store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValidationError(
            field, f"invalid unicode at character {e.start} (a lone surrogate); send UTF-8 text"
        ) from None


def check_window(value: int | None) -> None:
    if value is not None and value < 256:
        raise ValidationError("context_window_limit", f"must be at least 256 tokens (got {value})")


def check_limit(value: int, maximum: int, field: str = "limit") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(field, f"must be between 1 and {maximum} (got {value})")
    return value


class ConversationService:
    """Agents, memory blocks, conversations, history and search over one store."""

    def __init__(self, store: Store, settings: Settings, hybrid: EmbeddingIndex | None = None) -> None:
        self.store = store
        self.settings = settings
        # With an embedding model configured, search fuses full-text and vector rankings (search/hybrid.py);
        # None: full-text only, and nothing of it is imported.
        self.hybrid = hybrid
        self._default_conversation_lock = asyncio.Lock()  # one default conversation made per agent here

    # -- helpers --

    def check_text(self, field: str, value: str, *, allow_empty: bool = False) -> str:
        """Text a client sends (messages, prompts, block values): not blank unless allowed, and
        within --max-message-chars."""
        if not isinstance(value, str):
            raise ValidationError(field, "must be a string")
        if not allow_empty and not value.strip():
            raise ValidationError(field, "must not be empty")
        check_unicode(field, value)
        if len(value) > self.settings.max_message_chars:
            raise ValidationError(
                field,
                f"{len(value)} characters is over the limit of {self.settings.max_message_chars} "
                "(--max-message-chars / CONVERSATIONS_MAX_MESSAGE_CHARS)",
            )
        return value

    def check_name(self, value: str | None) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError("name", "must not be empty")
        if len(value.strip()) > NAME_MAX:
            raise ValidationError("name", f"{len(value.strip())} characters is over the limit of {NAME_MAX}")
        check_unicode("name", value)
        return value.strip()

    async def resolve_agent(self, agent_id: str | None) -> str:
        """The given agent (which must exist) or the default agent, made on first use
        (and made again after it was deleted)."""
        if agent_id is not None:
            await self.store.get_agent(agent_id)
            return agent_id
        existing = await self.store.default_agent_id()
        if existing:
            return existing
        return await self.store.ensure_default_agent(
            name="default", system=DEFAULT_SYSTEM, blocks=[dict(b) for b in DEFAULT_BLOCKS]
        )

    async def system_text(self, agent_id: str) -> str:
        return compile_system(await self.store.get_agent(agent_id))

    # -- agents --

    async def create_agent(
        self,
        name: str,
        model: str | None = None,
        system: str | None = None,
        memory_blocks: list[dict[str, Any]] | None = None,
        context_window_limit: int | None = None,
        letta: dict[str, Any] | None = None,
    ) -> Agent:
        """`letta`: what only Letta clients set (description, tags, model_settings); see check_letta_fields."""
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
        )

    async def get_agent(self, agent_id: str) -> Agent:
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
                agents = await self.store.list_agents(limit, stop, desc=not desc)
                return AgentList(agents=list(reversed(agents)), next_cursor=None)
        agents = await self.store.list_agents(limit + 1, key, desc=desc)
        if stop is not None:
            agents = [a for a in agents if ((a.created_at, a.id) > stop if desc else (a.created_at, a.id) < stop)]
        cursor = None
        if len(agents) > limit:
            agents = agents[:limit]
            cursor = encode_cursor({"kind": "agents", "order": order, "k": [agents[-1].created_at, agents[-1].id]})
        return AgentList(agents=agents, next_cursor=cursor)

    async def _agent_cursor(self, field: str, agent_id: str) -> Agent:
        try:
            return await self.store.get_agent(agent_id)
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
        agent = await self.store.get_agent(agent_id)
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
        await self.store.delete_agent(agent_id)
        return Deleted(id=agent_id)

    async def update_memory_block(self, agent_id: str | None, label: str, **fields: Any) -> Block:
        check_label(label)
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
            new = {**base}
            for k, v in given.items():
                if v is None and k in ("value", "limit", "read_only"):
                    v = {"value": "", "limit": DEFAULT_BLOCK_LIMIT, "read_only": False}[k]
                new[k] = v
            check_block(label, new["value"], new["limit"])
            return new

        return await self.store.upsert_block(agent_id, label, fields, merge)

    async def get_block(self, agent_id: str | None, label: str) -> Block:
        agent_id = await self.resolve_agent(agent_id)
        found = await self.store.get_block(agent_id, label)
        if found is None:
            raise NotFoundError("block", label)
        return found

    async def get_block_by_id(self, block_id: str) -> tuple[str, Block]:
        """The block with this id and the id of its agent."""
        return await self.store.get_block_by_id(block_id)

    # -- conversations --

    async def create_conversation(
        self, agent_id: str | None = None, model: str | None = None, summary: str | None = None
    ) -> Conversation:
        model = check_handle("model", model)
        if summary is not None:
            self.check_text("summary", summary, allow_empty=True)
        # One read: that the agent exists, and what its system prompt is (made on first use for the default).
        agent = await (self.store.get_agent(agent_id) if agent_id is not None else self.store.default_agent())
        if agent is None:
            agent = await self.store.get_agent(await self.resolve_agent(None))
        return await self.store.create_conversation(
            agent.id, model=model, summary=summary, system_text=compile_system(agent)
        )

    async def get_conversation(self, conversation_id: str) -> Conversation:
        return await self.store.get_conversation(conversation_id)

    async def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation:
        fields = {k: v for k, v in fields.items() if v is not UNSET}
        if "model" in fields:
            fields["model"] = check_handle("model", fields["model"])
        if fields.get("summary") is not None:
            self.check_text("summary", fields["summary"], allow_empty=True)
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
                last = await self.store.get_conversation(after_id)
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
        src = await self.store.get_conversation(conversation_id)
        return await self.store.fork_conversation(conversation_id, message_id, await self.system_text(src.agent_id))

    async def delete_conversation(self, conversation_id: str) -> Deleted:
        await self.store.delete_conversation(conversation_id)
        return Deleted(id=conversation_id)

    # -- messages and search --

    async def list_messages(
        self,
        conversation_id: str,
        limit: int = 100,
        after: str | None = None,
        order: Literal["asc", "desc"] = "asc",
        message_types: list[str] | None = None,
        include_system: bool = False,
        *,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> MessageList:
        """A page of the history. `after_id`/`before_id` are message ids (Letta's cursors): the page
        holds the messages right after / right before that one in `order`."""
        check_limit(limit, MAX_PAGE)
        if after and (after_id or before_id):
            raise ValidationError("after", "pass either a next_cursor or message ids, not both")
        if order not in ("asc", "desc"):
            raise ValidationError("order", "use asc or desc")

        bad = [t for t in message_types or [] if t not in MESSAGE_TYPES]
        if bad:
            raise ValidationError("message_types", f"unknown type(s) {bad}; use any of {list(MESSAGE_TYPES)}")
        key = stop = None  # an unknown conversation is reported by the history read itself
        types = set(message_types) if message_types else None
        if after:
            key = tuple(decode_cursor(after, key=(int, int), kind="messages", order=order, conv=conversation_id)["k"])
        if after_id:
            key = await self._history_cursor(conversation_id, "after", after_id)
        if before_id:
            stop = await self._history_cursor(conversation_id, "before", before_id)
            if not after_id:  # the page nearest the cursor, walked backwards, then put in order
                msgs, _ = await self.store.list_history(
                    conversation_id,
                    limit=limit,
                    after=stop,
                    desc=order != "desc",
                    types=types,
                    include_system=include_system,
                )
                return MessageList(messages=list(reversed(msgs)), next_cursor=None)
        msgs, next_key = await self.store.list_history(
            conversation_id,
            limit=limit,
            after=key,
            desc=order == "desc",
            types=types,
            include_system=include_system,
            stop=stop,
        )
        cursor = None
        if next_key is not None and stop is None:
            cursor = encode_cursor({"kind": "messages", "order": order, "conv": conversation_id, "k": list(next_key)})
        return MessageList(messages=msgs, next_cursor=cursor)

    async def _history_cursor(self, conversation_id: str, field: str, message_id: str) -> tuple[int, int]:
        try:
            return await self.store.history_key_of(conversation_id, message_id)
        except ValidationError:
            raise ValidationError(
                field, f"message {message_id} is not in conversation {conversation_id}; pass an id from a previous page"
            ) from None

    async def active_runs(self, conversation_id: str) -> list[str]:
        """Ids of the conversation's runs that are queued or running."""
        await self.store.get_conversation(conversation_id)
        return [run for run, conv in await self.store.unfinished_runs() if conv == conversation_id]

    async def search(
        self,
        query: str,
        agent_id: str | None = None,
        conversation_id: str | None = None,
        roles: list[str] | None = None,
        start_date: str | None = None,
        end_date: str | None = None,
        limit: int = 10,
    ) -> SearchResults:
        check_limit(limit, MAX_SEARCH_RESULTS)
        if not isinstance(query, str) or not query.strip():
            raise ValidationError("query", "must not be empty; give words to look for")
        if len(query) > self.settings.max_message_chars:
            raise ValidationError("query", f"over {self.settings.max_message_chars} characters")
        bad = [r for r in roles or [] if r not in ("user", "assistant", "tool")]
        if bad:
            raise ValidationError("roles", f"unknown role(s) {bad}; use user, assistant or tool")
        start = parse_date_bound("start_date", start_date, end=False)
        end = parse_date_bound("end_date", end_date, end=True)
        check_date_range(start, end)
        if conversation_id is not None:
            conv = await self.store.get_conversation(conversation_id)
            if agent_id is not None and agent_id != conv.agent_id:
                raise ValidationError("agent_id", f"conversation {conversation_id} belongs to agent {conv.agent_id}")
            agent_id = conv.agent_id
        else:
            agent_id = await self.resolve_agent(agent_id)
        text, span = dates.understand(query)
        words = terms(text)
        if not words:
            return SearchResults(results=[])
        scope: dict[str, Any] = {
            "agent_id": agent_id,
            "roles": roles or None,
            "conversation_id": conversation_id,
        }

        async def ranked(lo: str | None, hi: str | None, k: int) -> list[SearchResult]:
            if self.hybrid is not None:
                return await self.hybrid.search(query=text, terms=words, start=lo, end=hi, limit=k, **scope)
            return await self.store.search(terms=words, start=lo, end=hi, limit=k, **scope)

        # A date in the question (search/dates.py): its span is searched first, and the rest of
        # the page comes from the whole scope, so a date that points wrong costs places, not answers.
        within = _narrowed(start, end, span.bounds()) if span else None
        if within is None:
            return SearchResults(results=await ranked(start, end, limit))
        first = await ranked(*within, limit)
        if len(first) >= limit:
            return SearchResults(results=first)
        seen = {r.message_id for r in first}
        rest = [r for r in await ranked(start, end, limit + len(first)) if r.message_id not in seen]
        return SearchResults(results=first + rest[: limit - len(first)])


def _narrowed(start: str | None, end: str | None, span: tuple[str, str]) -> tuple[str, str] | None:
    """The search's own bounds narrowed to a date span; None when they do not overlap."""
    lo = max(start, span[0]) if start else span[0]
    hi = min(end, span[1]) if end else span[1]
    return (lo, hi) if lo <= hi else None


__all__ = ["ConversationService", "NotFoundError", "UNSET", "check_handle"]
