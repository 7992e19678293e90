"""History, runs and search: reading what conversations hold, only ever the acting principal's."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from .. import principals
from ..errors import ValidationError
from ..models import MAX_PAGE, MAX_SEARCH_RESULTS, Message, MessageList, Run, SearchResult, SearchResults
from ..search import dates
from ..search.query import terms
from ..storage import MESSAGE_TYPES
from ..util import check_date_range, decode_cursor, encode_cursor, parse_date_bound
from .base import ServiceBase, check_limit

SPAN_DEPTH = 50  # candidates read within a question's date span before those telling of it go first
DATED_DEPTH = 50  # messages found by date words alone in that span, checked for telling of its days


class HistoryService(ServiceBase):
    """A conversation's history page by page, its runs, and search over an agent's pooled history."""

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
        await self.owners.check("conversation", conversation_id)
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
        await self.get_conversation(conversation_id)
        return [run for run, conv in await self.store.unfinished_runs() if conv == conversation_id]

    async def get_message(self, message_id: str) -> Message:
        """A stored message by id (in_context False)."""
        await self.owners.check("message", message_id)
        return await self.store.get_message(message_id)

    async def list_runs(
        self, *, conversation_id: str | None, agent_id: str | None, statuses: list[str] | None, limit: int, desc: bool
    ) -> list[Run]:
        """The principal's runs by creation, optionally of one conversation or agent (which must be theirs)."""
        if conversation_id is not None:
            await self.owners.check("conversation", conversation_id)
        if agent_id is not None:
            await self.owners.check("agent", agent_id)
        return await self.store.list_runs(
            conversation_id=conversation_id,
            agent_id=agent_id,
            statuses=statuses,
            limit=limit,
            desc=desc,
            principal=principals.current(),
        )

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
            conv = await self.get_conversation(conversation_id)
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

        # With a reranker (search/rerank.py) the ranking goes deeper than the page, and the
        # reranker picks the page from those candidates.
        reranker = self.reranker
        depth = reranker.depth(limit) if reranker is not None else limit
        # A date in the question (search/dates.py): its span is searched first, and the rest of
        # the page comes from the whole scope, so a date that points wrong costs places, not answers.
        within = _narrowed(start, end, span.bounds()) if span else None
        if span is None or within is None:
            found = await ranked(start, end, depth)
            return SearchResults(results=await reranker.rerank(text, found, limit) if reranker else found)
        # Within the span, a message that dates what it tells into the asked days ("yesterday" said
        # the day after) comes before one that merely falls in the span's slack, reranked or not. The
        # telling ones come in full text's order of the question's words, then those found by the
        # words messages date with alone (searched there too, as the question's date stands for
        # them; found that way, a message counts only if it tells of those days), then those only
        # the vectors found: once the day is known, vectors add little.
        lo, hi = within
        searches = [  # independent: a backend with a connection pool runs them side by side
            ranked(lo, hi, max(depth, SPAN_DEPTH)),
            self.store.search(terms=list(dates.TELLING_WORDS), start=lo, end=hi, limit=DATED_DEPTH, **scope),
        ]
        if self.hybrid is not None:
            searches.append(self.store.search(terms=words, start=lo, end=hi, limit=SPAN_DEPTH, **scope))
        topical, dated, *rest_of = await asyncio.gather(*searches)
        by_words = rest_of[0] if rest_of else topical
        first = dates.told_first(topical, span, told_from=[*by_words, *dated, *topical])[:depth]
        if len(first) >= limit:
            if reranker is not None:
                first = dates.told_first(await reranker.rerank(text, first, len(first)), span)
            return SearchResults(results=first[:limit])
        seen = {r.message_id for r in first}
        rest = [r for r in await ranked(start, end, depth + len(first)) if r.message_id not in seen]
        rest = rest[: depth - len(first)]
        if reranker is not None:  # one call over both; the span's hits stay first, each part in the reranker's order
            order = await reranker.rerank(text, first + rest, len(first) + len(rest))
            first = dates.told_first([r for r in order if r.message_id in seen], span)
            rest = [r for r in order if r.message_id not in seen]
        return SearchResults(results=first + rest[: limit - len(first)])


def _narrowed(start: str | None, end: str | None, span: tuple[str, str]) -> tuple[str, str] | None:
    """The search's own bounds narrowed to a date span; None when they do not overlap."""
    lo = max(start, span[0]) if start else span[0]
    hi = min(end, span[1]) if end else span[1]
    return (lo, hi) if lo <= hi else None
