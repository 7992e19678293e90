"""Memory history: the versions a block's value went through, and restoring one of them.

Every write of a block value (the agent's memory tools in a run, update_memory_block, a restore, an
agent's creation or import) is stored with its version in the same transaction as the value
(storage's upsert_block and edit_block_value), so versions are 1, 2, … without gaps and none is lost
to a race; this module reads them back and turns a restore into an ordinary write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, ValidationError
from ..models import Block, BlockHistory, ChangedBy
from ..runs.memory import check_label
from ..util import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from .conversations import ConversationService

HISTORY_PAGE_MAX = 1000  # versions in one page of get_memory_block_history


def check_expected_version(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValidationError(
            "expected_version", f"must be a version number, 0 for a block that must not exist yet (got {value!r})"
        )


def check_version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("version", f"versions are numbered from 1 (got {value!r})")
    return value


async def block_history(
    service: ConversationService, agent_id: str | None, label: str, limit: int = 50, after: str | None = None
) -> BlockHistory:
    """A page of the block's versions, newest first; `after` is the previous page's next_cursor."""
    check_label(label)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_PAGE_MAX:
        raise ValidationError("limit", f"must be between 1 and {HISTORY_PAGE_MAX} (got {limit!r})")
    agent_id = await service.resolve_agent(agent_id)
    before = None
    if after is not None:
        before = decode_cursor(after, key=(int,), kind="block_history", agent=agent_id, label=label)["k"][0]
    found = await service.store.block_history(agent_id, label, limit=limit + 1, before=before)
    if found is None:
        raise NotFoundError("block", label)
    block, versions = found
    cursor = None
    if len(versions) > limit:
        versions = versions[:limit]
        cursor = encode_cursor(
            {"kind": "block_history", "agent": agent_id, "label": label, "k": [versions[-1].version]}
        )
    return BlockHistory(
        agent_id=agent_id, label=label, current_version=block.version, versions=versions, next_cursor=cursor
    )


async def restore_block(
    service: ConversationService, agent_id: str | None, label: str, version: int, changed_by: ChangedBy | None = None
) -> Block:
    """Make an earlier version's value current again, as the block's next version."""
    check_label(label)
    check_version(version)
    agent_id = await service.resolve_agent(agent_id)
    found = await service.store.block_version(agent_id, label, version)
    if found is None:
        raise NotFoundError("block", label)
    block, old, oldest = found
    if old is None:
        if version > block.version:
            problem = f"block {label!r} has no version {version}; its current version is {block.version}"
        else:
            problem = (
                f"version {version} of block {label!r} is no longer kept; the oldest kept is {oldest} "
                "(--memory-history-limit)"
            )
        raise ValidationError("version", problem)
    return await service.update_memory_block(
        agent_id, label, value=old.value, changed_by=changed_by or {"tool": "restore_memory_block"}
    )
