"""What every service operation shares: input checks, and which agent a request means (the given
one, if it is the acting principal's, or the principal's default agent)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .. import principals
from ..config import Settings
from ..errors import ValidationError
from ..models import Conversation
from ..runs.memory import DEFAULT_BLOCKS, DEFAULT_SYSTEM, compile_system
from ..storage import Store
from .owners import Owners

if TYPE_CHECKING:
    from ..search.hybrid import EmbeddingIndex
    from ..search.rerank import Reranker

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


class ServiceBase:
    """The store, settings and checks the services share."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        hybrid: EmbeddingIndex | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        # With an embedding model configured, search fuses full-text and vector rankings (search/hybrid.py);
        # None: full-text only, and nothing of it is imported.
        self.hybrid = hybrid
        # With a rerank model configured, a reranker picks each page from deeper candidates (search/rerank.py).
        self.reranker = reranker
        # Every id a client names is checked against the principal acting (principals.current()) here.
        self.owners = Owners(store)

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
        """The given agent (which must exist and be the principal's) or the principal's default agent,
        made on first use (and made again after it was deleted)."""
        if agent_id is not None:
            await self.owners.check("agent", agent_id)
            return agent_id
        principal = principals.current()
        existing = await self.store.default_agent_id(principal)
        if existing:
            return existing
        return await self.store.ensure_default_agent(
            name="default", system=DEFAULT_SYSTEM, blocks=[dict(b) for b in DEFAULT_BLOCKS], principal=principal
        )

    async def system_text(self, agent_id: str) -> str:
        return compile_system(await self.store.get_agent(agent_id))

    async def get_conversation(self, conversation_id: str) -> Conversation:
        await self.owners.check("conversation", conversation_id)
        return await self.store.get_conversation(conversation_id)
