"""Search text as PostgreSQL indexes it: normalized in Python, so the index does not depend on the
server's locale (its `[[:alnum:]]` is ASCII-only under a C locale) nor on the unaccent extension."""

from __future__ import annotations

import re
import unicodedata

from ..types import NewMessage

_TOKEN = re.compile(r"[^\W_]+")  # unicode61's token rule: letters and digits; '_' separates


def normalize(text: str | None) -> str | None:
    """Lower case, diacritics dropped, tokens joined by single spaces (what to_tsvector('conv', …) gets)."""
    if text is None:
        return None
    folded = unicodedata.normalize("NFD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return " ".join(_TOKEN.findall(folded))


def indexed_text(m: NewMessage) -> str | None:
    """The normalized search text of a message to store (None: not searchable)."""
    text = m.search_text()
    return normalize(text) if text else None


# The text full-text search reports (snippets, vectors' input): what the SQLite schema computes as
# its `search_text` column.
SEARCH_TEXT = (
    "(CASE WHEN m.message_type = 'system_message' THEN NULL ELSE coalesce(m.search_extra, nullif(m.content, '')) END)"
)
