"""Small shared helpers: ids, timestamps, date parsing, cursors, polling."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from time import time_ns
from typing import Any

from .errors import ValidationError

ID_PREFIXES = ("agent", "conv", "message", "block", "run")
POLL_FIRST, POLL_MAX = 0.02, 0.25  # seconds between looks at what another process changes, doubling


def backoff(first: float = POLL_FIRST, most: float = POLL_MAX) -> Iterator[float]:
    """Delays for polling state only the database tells (another process's turn or run): doubling from
    `first` to at most `most`, so a short wait is seen at once and a long one costs few queries."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


def new_id(prefix: str) -> str:
    """A prefixed UUID such as `conv-019ab3c1-…`: version 7 (RFC 9562: a millisecond timestamp,
    then random bits), so new rows land at the end of the id indexes instead of on random
    pages; that keeps inserts cheap as the database grows (bench/: ingest at 1M messages)."""
    return new_ids(prefix, 1)[0]


def new_ids(prefix: str, n: int) -> list[str]:
    """`n` ids as `new_id` makes them, with one clock read and one call for random bytes."""
    t = f"{time_ns() // 1_000_000:012x}"  # 48-bit millisecond timestamp
    head = f"{prefix}-{t[:8]}-{t[8:]}-7"  # ... then the version nibble
    noise = os.urandom(10 * n).hex()  # 80 random bits per id: 12 (rand_a) + 2 replaced by the variant + 62
    out = []
    for i in range(0, 20 * n, 20):
        r = noise[i : i + 20]
        variant = "89ab"[int(r[3], 16) & 3]  # RFC 9562 variant bits 10
        out.append(f"{head}{r[:3]}-{variant}{r[4:7]}-{r[7:19]}")
    return out


def now_iso() -> str:
    """Now as ISO 8601 UTC with microseconds and a `Z` (sorts as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_date_bound(field: str, value: str | None, *, end: bool) -> str | None:
    """Parse `YYYY-MM-DD` or an ISO datetime into a comparable ISO string.

    A date-only end bound covers the whole day (inclusive); a datetime without a zone is UTC."""
    if value is None:
        return None
    text = value.strip()
    problem = f"{value!r} is not a date; use YYYY-MM-DD or an ISO 8601 datetime like 2026-01-31T12:00:00Z"
    if not text:
        raise ValidationError(field, "empty date; use YYYY-MM-DD or an ISO 8601 datetime")
    try:
        try:
            d = date.fromisoformat(text)  # any date-only form (2026-01-31, 20260131)
        except ValueError:
            pass
        else:
            return to_iso(datetime.combine(d, time.max if end else time.min, tzinfo=UTC))
        if text[-1:] in "zZ":
            text = text[:-1] + "+00:00"
        return to_iso(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise ValidationError(field, problem) from None


def check_date_range(start: str | None, end: str | None) -> None:
    """Bounds from parse_date_bound must not be reversed (an empty range is a caller's mistake)."""
    if start is not None and end is not None and start > end:
        raise ValidationError("start_date", "is after end_date; swap them or widen the range")


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, key: tuple[type | tuple[type, ...], ...] = (), **expected: Any) -> dict[str, Any]:
    """Decode an opaque cursor; it must have been made with the same ordering.

    `key` gives the types of the position list `k` it carries, so a forged or damaged cursor
    is a validation error rather than a crash deeper down."""
    bad = ValidationError("after", "not a cursor this server made; pass next_cursor from a previous page")
    if not isinstance(cursor, str) or not cursor.strip():
        raise bad
    try:
        pad = "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(cursor.strip() + pad))
    except (ValueError, TypeError):
        raise bad from None
    if not isinstance(payload, dict):
        raise bad
    if key:
        k = payload.get("k")
        if not isinstance(k, list) or len(k) != len(key):
            raise bad
        for item, kind in zip(k, key, strict=True):
            if not isinstance(item, kind) or isinstance(item, bool):
                raise bad
    for name, want in expected.items():
        if payload.get(name) != want:
            raise ValidationError(
                "after",
                f"the cursor was made for {name}={payload.get(name)!r}, not {want!r}; "
                "start again without `after` when changing the ordering",
            )
    return payload


SNIPPET_CHARS = 160


def lead(text: str, size: int = SNIPPET_CHARS) -> str:
    """The start of a text as a snippet: whitespace collapsed, cut at a word boundary."""
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= size:
        return text
    cut = text[:size]
    space = cut.rfind(" ")
    return (cut[:space] if space > size // 2 else cut) + "…"
