"""Fair use per principal (SQLite): the slot check a run's start makes in its claim transaction, and the
shared sliding-window request counter of the rate limit.

Slots: a run may start while its principal has fewer than `most` runs running in live processes, and no
other of its conversations that is free to go (no live process holds its turn) has a run queued from
before this conversation's earliest queued run. Conversations, not runs, are compared: each conversation's
runs go in their own turn order, so the one that goes next there (whatever its own position) carries its
conversation's place, and no two conversations can each wait for the other.

Rate limit: a principal's row holds the times of its latest accepted requests (at most `limit`, all within
the window); a request is accepted when fewer than `limit` are, and otherwise learns when the oldest leaves
the window. Every process on the file shares the row; SQLite serializes the writes."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from .base import SQLiteBase

NEVER = 9223372036854775807  # a rowid later than any: a run (or conversation) with nothing queued


def no_slot(
    db: sqlite3.Connection, conversation_id: str, principal: str, most: int, owner: str, alive: Callable[[str], bool]
) -> bool:
    """Whether a run of `principal` in `conversation_id` must wait for a slot (see the module docstring)."""

    def live(o: str | None) -> bool:
        return o is not None and (o == owner or alive(o))

    # Each `status IN ('queued', 'running')` is for the planner: SQLite uses a partial index only when the
    # query repeats its condition.
    running = db.execute(
        "SELECT owner, count(*) FROM runs WHERE principal = ? AND status IN ('queued', 'running') "
        "AND status = 'running' GROUP BY owner",
        (principal,),
    ).fetchall()
    if sum(n for o, n in running if live(o)) >= most:
        return True
    earlier = db.execute(
        "SELECT r.owner, t.owner FROM runs r LEFT JOIN turns t ON t.conversation_id = r.conversation_id "
        "WHERE r.principal = ? AND r.status IN ('queued', 'running') AND r.status = 'queued' "
        "AND r.conversation_id != ? AND r.owner IS NOT NULL AND r.rowid < coalesce((SELECT min(rowid) FROM runs "
        "WHERE conversation_id = ? AND status IN ('queued', 'running') AND status = 'queued'), ?)",
        (principal, conversation_id, conversation_id, NEVER),
    ).fetchall()
    return any(live(queued_by) and not live(holder) for queued_by, holder in earlier)


def take_request(db: sqlite3.Connection, principal: str, limit: int, window: float, now: float) -> float:
    """Count a request of `principal` if fewer than `limit` were accepted within `window` seconds before
    `now`: 0.0; otherwise (nothing counted) the seconds until one is allowed."""
    row = db.execute("SELECT hits FROM rate_limits WHERE principal = ?", (principal,)).fetchone()
    hits = [h for h in (json.loads(row[0]) if row else []) if h > now - window]
    if len(hits) >= limit:
        return hits[-limit] + window - now
    hits.append(now)
    db.execute(
        "INSERT INTO rate_limits (principal, hits) VALUES (?, ?) "
        "ON CONFLICT (principal) DO UPDATE SET hits = excluded.hits",
        (principal, json.dumps(hits)),
    )
    return 0.0


class FairUseStore(SQLiteBase):
    async def take_request(self, principal: str, limit: int, window: float = 60.0) -> float:
        """Count one request of `principal` against `limit` per `window` seconds, for every process on the
        file: 0.0 if it is allowed, else (not counted) the seconds until a request will be."""
        return await self.database.write(lambda db: take_request(db, principal, limit, window, time.time()))
