"""The Store contract: everything the layers above storage may ask of a database.

Services, the runtime, the agent loop, compaction, cancels, hybrid search and the HTTP layer type
against `Store` and `Presence`; only `storage.open_store` knows which class implements them
(today `SQLiteStore`). A second backend implements these two protocols and nothing else:

- **Units of work.** Each write method is one transaction: it commits whole or not at all, also
  when the awaiting task is cancelled midway (finish it or roll it back; never leave it open).
  Reads see committed data only; a method that reads several things (an agent with its blocks,
  a history page, a run with its messages) reads them from one snapshot.
- **Serialization.** Writes touching one conversation (append, start_run, claim_turn,
  finish_run, replace_context_prefix, fork, delete) must not interleave: history order is write
  order. `edit_block_value` and `upsert_block` are read-modify-write under a row lock; their
  callbacks run inside the unit of work (maybe in a database thread), so they must be pure
  functions of their arguments. SQLite gets all this from its single writer; a server database
  from row locks.
- **Keys.** Messages have an integer key the backend assigns, increasing in write order within
  a conversation (SQLite's rowid; a bigint identity elsewhere). The history cursors
  (`HistoryKey`) and the vector index (`PendingMessage.rowid`, `load_vectors`,
  `present_rowids`, `scoped_rowids`, `vector_hits`) carry it; nothing else may rely on it.
- **Search** gets words (`terms`, from search.terms()), never query syntax: the backend builds
  its own (an FTS5 expression, a tsquery). Rank by relevance with term rarity (BM25-like);
  `exact=True` is the uncapped ranking tests compare against.
- **Processes.** Several server processes may share one database. `presence()` is this
  process's membership (file locks for SQLite; advisory locks or heartbeats for a server
  database); the store consults it itself when a run or compaction claims a conversation's turn
  (a dead process's claim does not count). The `wait_*` methods return when what they wait for
  may have happened, or after `within` seconds: polling is the fallback (SQLite), a backend with
  notifications (LISTEN/NOTIFY) returns early. Callers always re-check after a wait.
- **Principals.** Every agent belongs to one principal (`principal` at creation; earlier data
  belongs to `local`) and everything of the agent with it. Methods that take an id do not check
  whose it is: the services do (`principal_of`) before acting. Methods that list or pick without
  an id (`list_agents`, the default agent, `list_runs`) take the principal and never reach past it.
- **Errors.** Missing rows raise errors.NotFoundError; bad references errors.ValidationError.
  Nothing backend-specific (sqlite3, asyncpg) escapes to the caller as a different error than
  the same failure would give on the other backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..models import Agent, Block, BlockVersion, ChangedBy, Conversation, Message, Run, SearchResult
from ..principals import LOCAL
from .types import HistoryKey, ImportedConversation, NewMessage, PendingMessage, PromptRows, SendTarget, TokenInfo


class Presence(Protocol):
    """This process's membership among the processes sharing one database."""

    owner: str  # names this process in stored turns and runs

    async def join(self) -> bool:
        """Register this process; True if no other live process uses the database."""

    async def alive(self, owner: str) -> bool:
        """Whether the process named `owner` still runs."""

    async def leave(self) -> None: ...


class Store(Protocol):
    """Agents, memory blocks, conversations, messages, runs, search and message embeddings."""

    location: str  # where the data lives, for logs (a path, or a URL without credentials)

    # -- lifecycle and processes --

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Fails if the database cannot be reached (health checks)."""

    def presence(self) -> Presence:
        """This process's presence (one per store); the store uses it when claiming turns."""

    async def wait_turn(self, conversation_id: str, within: float) -> None:
        """Until the conversation's turn may have been released, or `within` seconds."""

    async def wait_cancel_requests(self, owner: str, within: float) -> None:
        """Until a cancel may have been requested for one of `owner`'s runs, or `within` seconds."""

    async def wait_run_end(self, run_id: str, within: float) -> None:
        """Until the run may have ended, or `within` seconds."""

    async def wait_start(self, conversation_id: str, principal: str, within: float) -> None:
        """Until the conversation's turn may have been released or a run of `principal` may have ended
        (freeing a slot), or `within` seconds."""

    async def take_request(self, principal: str, limit: int, window: float = 60.0) -> float:
        """Count one request of `principal` against at most `limit` per `window` seconds, shared by every
        process on the database: 0.0 if it is allowed; else (nothing counted) the seconds until one is."""

    # -- agents and blocks --

    async def create_agent(
        self,
        *,
        name: str,
        model: str | None,
        system: str,
        context_window_limit: int | None,
        blocks: list[dict[str, Any]],
        is_default: bool = False,
        letta: dict[str, Any] | None = None,
        principal: str = LOCAL,
        changed_by: ChangedBy | None = None,
    ) -> Agent:
        """`letta`: description, tags and model_settings as Letta clients give them (kept and returned).
        `principal`: who the agent (and everything of it) belongs to; it never changes. Each block's
        history starts at version 1, made by `changed_by`."""

    async def ensure_default_agent(
        self, *, name: str, system: str, blocks: list[dict[str, Any]], principal: str = LOCAL
    ) -> str:
        """The principal's default agent's id, made once however many callers race (one per principal)."""

    async def get_agent(self, agent_id: str) -> Agent: ...

    async def default_agent(self, principal: str = LOCAL) -> Agent | None: ...

    async def default_agent_id(self, principal: str = LOCAL) -> str | None: ...

    async def list_agents(
        self, limit: int, after: tuple[str, str] | None, desc: bool = False, *, principal: str = LOCAL
    ) -> list[Agent]:
        """The principal's agents by (created_at, id); `after` is the last page's last (created_at, id)."""

    async def principal_of(self, kind: str, key: str) -> str | None:
        """Who the agent, conversation, run, block or message (`kind`) `key` belongs to: its agent's
        principal; None if there is no such thing. The services check it before acting on an id."""

    async def update_agent(self, agent_id: str, fields: dict[str, Any]) -> Agent: ...

    async def claim_default_conversation(self, agent_id: str, conversation_id: str) -> str:
        """Make `conversation_id` the agent's default conversation (Letta's agent-direct routes) unless it
        has one that still exists; the default conversation's id either way."""

    async def delete_agent(self, agent_id: str) -> None: ...

    async def get_block(self, agent_id: str, label: str) -> Block | None: ...

    async def get_block_by_id(self, block_id: str) -> tuple[str, Block]:
        """The block and its agent's id."""

    async def upsert_block(
        self,
        agent_id: str,
        label: str,
        fields: dict[str, Any],
        check: Callable[[Block | None, dict[str, Any]], dict[str, Any]],
        *,
        changed_by: ChangedBy | None = None,
        keep: int = 1000,
    ) -> Block:
        """`check(current, fields)` runs inside the transaction and returns the new values or raises.
        A new block, or a new value, is the block's next version (with `changed_by`), stored in the same
        transaction; versions past the newest `keep` are dropped."""

    async def edit_block_value(
        self,
        agent_id: str,
        label: str,
        edit: Callable[[Block | None], str],
        *,
        changed_by: ChangedBy | None = None,
        keep: int = 1000,
    ) -> Block:
        """`edit(current)` runs inside the transaction, so parallel edits never lose each other; a new
        value is recorded as in upsert_block."""

    async def block_history(
        self, agent_id: str, label: str, *, limit: int, before: int | None
    ) -> tuple[Block, list[BlockVersion]] | None:
        """The block and up to `limit` of its versions numbered below `before` (None: from the newest),
        newest first, from one snapshot; None if there is no such block."""

    async def block_version(
        self, agent_id: str, label: str, version: int
    ) -> tuple[Block, BlockVersion | None, int] | None:
        """The block, that version of it (None if there is none or it was pruned) and the oldest version
        kept; None if there is no such block."""

    # -- the change feed of MCP resource subscriptions --

    async def resource_changes(self, after: int | None, within: float) -> tuple[int, list[tuple[str, str]] | None]:
        """Changes any process committed after position `after`, waiting up to `within` seconds for
        one: (new position, [(kind, key)]) with kind `b` (a block's value; key `agent_id:label`), `t` (a
        conversation's turn ended or its title changed; key its id) or `l` (agents, blocks or conversations
        came or went; key empty). None instead of the list when some may have been missed (a reader too
        slow, or notifications interrupted): everything may have changed. `after` None: the position now."""

    # -- conversations and messages --

    async def create_conversation(
        self, agent_id: str, *, model: str | None, summary: str | None, system_text: str
    ) -> Conversation: ...

    async def get_conversation(self, conv_id: str) -> Conversation: ...

    async def update_conversation(self, conv_id: str, fields: dict[str, Any]) -> Conversation: ...

    async def list_conversations(
        self, agent_id: str, *, order_by: str, desc: bool, limit: int, after: list[Any] | None
    ) -> list[Conversation]:
        """Keyset pages by (order_by, id); never-run conversations sort last in both orders."""

    async def fork_conversation(self, src_id: str, message_id: str | None, system_text: str) -> Conversation: ...

    async def delete_conversation(self, conv_id: str) -> None:
        """Its rows go, except those a fork holds (reported from then on under that fork)."""

    async def append_messages(
        self, conv_id: str, messages: list[NewMessage], *, in_context: bool = True
    ) -> list[Message]:
        """Store and (by default) append to the context window; returns them as stored."""

    async def import_conversation(self, data: ImportedConversation) -> Conversation:
        """A new conversation with its messages, runs and context, in one transaction (NotFoundError
        if the agent is gone); its messages are searchable when it returns."""

    async def context_messages(self, conv_id: str) -> list[Message]:
        """The context window in prompt order, its system message first."""

    async def set_system_text(self, conv_id: str, text: str) -> None: ...

    async def replace_context_prefix(self, conv_id: str, evicted_ids: list[str], summary: NewMessage) -> Message:
        """Compaction: the evicted messages leave the context, `summary` follows the system message."""

    async def list_history(
        self,
        conv_id: str,
        *,
        limit: int,
        after: HistoryKey | None,
        desc: bool,
        types: set[str] | None,
        include_system: bool,
        stop: HistoryKey | None = None,
    ) -> tuple[list[Message], HistoryKey | None]: ...

    async def history_key_of(self, conv_id: str, message_id: str) -> HistoryKey: ...

    async def get_message(self, message_id: str) -> Message:
        """A stored message by id, in_context False; NotFoundError if there is none."""

    # -- runs and turns --

    async def send_target(self, conversation_id: str, idempotency_key: str | None = None) -> SendTarget: ...

    async def create_run(
        self,
        run_id: str,
        conversation_id: str,
        agent_id: str,
        *,
        status: str,
        idempotency_key: str | None,
        owner: str | None = None,
        principal: str = LOCAL,
    ) -> Run:
        """Store a queued run sent by `principal`; errors.DuplicateRunError (nothing written) if
        `idempotency_key` already names a run of the conversation (stored by another process since the
        caller looked)."""

    async def start_run(
        self,
        run_id: str,
        conversation_id: str,
        agent_id: str,
        inputs: list[NewMessage],
        *,
        model: str,
        started_at: str,
        create: bool = False,
        idempotency_key: str | None = None,
        owner: str = "",
        principal: str = LOCAL,
        max_running: int | None = None,
    ) -> tuple[Run, PromptRows] | None:
        """Claim the turn, start the run and store its input in one transaction, and read the first
        prompt; None (nothing written) while another live process holds the turn or queued earlier, or
        (with `max_running`) while `principal` has that many runs running in live processes or a run of
        another of its conversations, free to start, was queued before this conversation's first queued
        run (slots go in send order, conversation by conversation, so no two wait for each other).
        A turn held by a dead process's run ends that run first (DEAD_OWNER_END, its rows out of the
        context), in the same transaction. DuplicateRunError as for create_run."""

    async def get_run(self, run_id: str, *, with_messages: bool = True) -> Run: ...

    async def run_by_idempotency_key(self, conversation_id: str, key: str) -> str | None: ...

    async def list_runs(
        self,
        *,
        conversation_id: str | None,
        agent_id: str | None,
        statuses: list[str] | None,
        limit: int,
        desc: bool,
        principal: str | None = None,
    ) -> list[Run]:
        """Runs by creation (without their messages), filtered by conversation, agent, status and the
        principal owning their agent."""

    async def prompt_rows(self, conversation_id: str, agent_id: str) -> PromptRows: ...

    async def claim_turn(self, conversation_id: str, holder: str, owner: str) -> bool:
        """Take the turn for a compaction (`holder`) unless another live process holds it; a dead
        holder's run ends first, as in start_run."""

    async def release_turn(self, conversation_id: str, holder: str) -> None: ...

    async def clear_turns(self) -> None: ...

    async def unfinished_runs(self) -> list[tuple[str, str]]:
        """(run_id, conversation_id) of queued or running runs."""

    async def unfinished_runs_elsewhere(self, owner: str) -> list[tuple[str, str, str | None]]:
        """(run_id, conversation_id, owner) of queued or running runs not owned by `owner` (the dead-run
        sweep's one query: it must stay cheap)."""

    async def run_owner(self, run_id: str) -> str | None: ...

    async def request_cancel(self, run_id: str) -> bool:
        """Ask the run's owning process to stop it; False if it has ended."""

    async def cancel_requests(self, owner: str) -> list[str]: ...

    async def finish_run(
        self,
        run_id: str,
        conversation_id: str,
        fields: dict[str, Any],
        *,
        abandon: bool,
        append: list[NewMessage] | None = None,
        unfinished_only: bool = False,
    ) -> Run | None:
        """End the run (its final fields, `append`ed messages, and with `abandon` its rows out of the
        context and what its compaction evicted back) and release its turn, in one transaction; the run
        as it ended, None if unknown (with `unfinished_only`, also if it had already ended)."""

    # -- search and embeddings --

    async def search(
        self,
        *,
        agent_id: str,
        terms: Sequence[str],
        roles: list[str] | None,
        start: str | None,
        end: str | None,
        conversation_id: str | None,
        limit: int,
        exact: bool = False,
    ) -> list[SearchResult]: ...

    def data_changes(self) -> int:
        """Changes whenever this process wrote (a free check for the embedding indexer)."""

    async def messages_missing_embeddings(
        self, model: str, *, after: int = 0, limit: int = 64, agent_id: str | None = None
    ) -> list[PendingMessage]: ...

    async def claim_embedding_work(self, model: str, *, after: int = 0, limit: int = 64) -> list[PendingMessage]:
        """`messages_missing_embeddings`, each message returned claimed for this process until
        `release_embedding_work` or this process's end: other processes on the database skip it, so
        processes indexing together split the work and embed each message once. A message this process
        holds already is not returned again."""

    async def release_embedding_work(self, rowids: list[int]) -> None:
        """Give up the claims on these messages (their vectors stored, or the work abandoned)."""

    async def save_embeddings(self, model: str, vectors: list[tuple[str, int, bytes]]) -> list[tuple[int, str]]:
        """(message id, dim, float32 bytes) in; (message key, agent_id) of the rows written out."""

    async def vector_stamp(self, agent_id: str) -> int:
        """A number that changes when another process may have stored vectors of the agent: a matrix of
        them cached before is then to be reloaded."""

    async def load_vectors(self, agent_id: str, model: str, dim: int) -> tuple[list[int], bytes]: ...

    async def scoped_rowids(
        self,
        *,
        agent_id: str,
        roles: list[str] | None,
        start: str | None,
        end: str | None,
        conversation_id: str | None,
    ) -> list[int]: ...

    async def present_rowids(self, rowids: list[int], model: str, scope: dict[str, Any] | None = None) -> set[int]: ...

    async def vector_hits(self, rowids: list[int]) -> dict[int, SearchResult]: ...

    # -- named tokens (only their SHA-256 hashes are stored) --

    async def create_token(self, name: str, token_hash: str) -> TokenInfo:
        """ConflictError (nothing written) if an active token already has `name`, also one another
        process created a moment ago."""

    async def revoke_token(self, name: str) -> bool:
        """Revoke the active token named `name` (from its commit on, `token_name` no longer finds it);
        False if there is none."""

    async def list_tokens(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        """By name, then creation."""

    async def token_name(self, token_hash: str) -> str | None:
        """The name of the active token with this hash, or None (asked on every authenticated
        request: one indexed read)."""

    async def any_tokens(self) -> bool:
        """Whether any active named token exists (one cheap read)."""

    async def touch_tokens(self, used: dict[str, str]) -> None:
        """Record last use: token hash -> ISO time; an earlier time never replaces a later one."""
