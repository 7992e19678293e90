"""Small shared helpers: ids, timestamps, date parsing, cursors."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, time
from typing import Any

from .errors import ValidationError

ID_PREFIXES = ("agent", "conv", "message", "block", "run")


def new_id(prefix: str) -> str:
    """A prefixed UUID such as `conv-6f1c…`."""
    return f"{prefix}-{uuid.uuid4()}"


def now_iso() -> str:
    """Now as ISO 8601 UTC with microseconds and a `Z` (sorts as text)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_iso(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_date_bound(field: str, value: str | None, *, end: bool) -> str | None:
    """Parse `YYYY-MM-DD` or an ISO datetime into a comparable ISO string.

    A date-only end bound covers the whole day (inclusive)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise ValidationError(field, "empty date; use YYYY-MM-DD or an ISO 8601 datetime")
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            t = time.max if end else time.min
            return to_iso(datetime.combine(d, t, tzinfo=UTC))
        return to_iso(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ValidationError(
            field, f"{value!r} is not a date; use YYYY-MM-DD or an ISO 8601 datetime like 2026-01-31T12:00:00Z"
        ) from None


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, **expected: Any) -> dict[str, Any]:
    """Decode an opaque cursor; it must have been made with the same ordering."""
    try:
        pad = "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if not isinstance(payload, dict):
            raise ValueError
    except (ValueError, TypeError):
        raise ValidationError("after", "not a cursor this server made; pass next_cursor from a previous page") from None
    for key, want in expected.items():
        if payload.get(key) != want:
            raise ValidationError(
                "after",
                f"the cursor was made for {key}={payload.get(key)!r}, not {want!r}; "
                "start again without `after` when changing the ordering",
            )
    return payload
