"""The system prompt compiled from an agent's base prompt and its current memory blocks,
and the checks every block write goes through."""

from __future__ import annotations

import re
from typing import Any

from ..errors import ValidationError
from ..models import Agent, Block

DEFAULT_BLOCK_LIMIT = 20_000
LABEL_MAX = 100
# A label names a block in the model's tools and is an XML-ish tag in the system prompt,
# so it is one or more words of letters, digits, `_`, `-`, `.` and `/` (Letta's path-like labels such as
# `system/human/overview`), separated by single spaces.
LABEL = re.compile(r"^[\w.\-/]+( [\w.\-/]+)*$")

DEFAULT_SYSTEM = (
    "You are a helpful assistant with a persistent memory. Your core memory holds blocks that are "
    "always in view; keep them current with your memory tools when you learn something durable about "
    "the user or yourself. Past conversations of yours are searchable with conversation_search."
)

DEFAULT_BLOCKS: list[dict[str, Any]] = [
    {
        "label": "persona",
        "value": "I am a helpful assistant.",
        "description": "Who you are: your persona, how you behave and speak.",
        "limit": DEFAULT_BLOCK_LIMIT,
    },
    {
        "label": "human",
        "value": "",
        "description": "What you know about the person you are talking to.",
        "limit": DEFAULT_BLOCK_LIMIT,
    },
]


def compile_system(agent: Agent, blocks: list[Block] | None = None) -> str:
    """The system message for a model call: the base prompt, then every memory block."""
    blocks = agent.memory_blocks if blocks is None else blocks
    parts = [agent.system.rstrip(), "", "<memory_blocks>", "The following memory blocks are in your core memory:"]
    for b in blocks:
        parts += [
            "",
            f"<{b.label}>",
            f"<description>{b.description or ''}</description>",
            f"<metadata>chars_current={len(b.value)} chars_limit={b.limit}"
            f"{' read_only=true' if b.read_only else ''}</metadata>",
            "<value>",
            b.value,
            "</value>",
            f"</{b.label}>",
        ]
    parts.append("</memory_blocks>")
    return "\n".join(parts)


def check_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip():
        raise ValidationError("label", "a block label must not be empty")
    if len(label) > LABEL_MAX or not LABEL.match(label):
        raise ValidationError(
            "label",
            f"{label[:LABEL_MAX]!r} is not a block label; use up to {LABEL_MAX} letters, digits, _ - . / "
            "(e.g. persona, human, project_notes)",
        )
    return label


def check_block(label: str, value: str, limit: int) -> None:
    check_label(label)
    if limit < 1:
        raise ValidationError("limit", f"must be at least 1 (got {limit})")
    if len(value) > limit:
        raise ValidationError(
            "value",
            f"{len(value)} characters is over the block {label!r}'s limit of {limit}; shorten it or raise limit",
        )
