"""Fair use per principal (PostgreSQL), as SQLite's storage/fair.py: the slot check of a run's start,
made under the principal's advisory transaction lock (so two replicas never both take its last slot),
and the rate limit's shared request counter, one row per principal updated in one statement under its
row lock, on the database's clock (replicas' clocks may differ). A run's end notifies `conv_slot` with
its principal, so replicas' runs waiting for a slot look again at once."""

from __future__ import annotations

from .base import Conn, PgBase

SLOT_CLASS = 0x636F6E73  # advisory lock class of the per-principal slot locks ("cons"); key hashtext(principal)

NO_SLOT = (
    "SELECT (SELECT count(*) FROM runs WHERE principal = $1 AND status = 'running' AND owner IS NOT NULL "
    "AND (owner = $3 OR conv_owner_alive(owner))) >= $4 "
    "OR EXISTS (SELECT 1 FROM runs r WHERE r.principal = $1 AND r.status = 'queued' AND r.conversation_id <> $2 "
    "AND r.owner IS NOT NULL AND r.seq < coalesce((SELECT min(seq) FROM runs WHERE conversation_id = $2 "
    "AND status = 'queued'), 9223372036854775807) AND (r.owner = $3 OR conv_owner_alive(r.owner)) "
    "AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.conversation_id = r.conversation_id "
    "AND (t.owner = $3 OR conv_owner_alive(t.owner))))"
)

# Accepted: the row gains this request's time (older ones out of the window dropped) and comes back.
# Refused (already `limit` within the window): the row stays as it is and nothing comes back.
TAKE = (
    "INSERT INTO rate_limits AS r (principal, hits) "
    "VALUES ($1, ARRAY[extract(epoch FROM statement_timestamp())::float8]) "
    "ON CONFLICT (principal) DO UPDATE SET hits = ARRAY(SELECT h FROM unnest(r.hits) AS h "
    "WHERE h > excluded.hits[1] - $3 ORDER BY h) || excluded.hits[1] "
    "WHERE (SELECT count(*) FROM unnest(r.hits) AS h WHERE h > excluded.hits[1] - $3) < $2 RETURNING 1"
)


async def no_slot(c: Conn, conversation_id: str, principal: str, most: int, owner: str) -> bool:
    """Whether a run of `principal` in `conversation_id` must wait for a slot; called in a statement after
    the one that took the principal's slot lock (pg_advisory_xact_lock(SLOT_CLASS, hashtext(principal))),
    so its snapshot sees what the lock's last holder committed."""
    return bool(await c.fetchval(NO_SLOT, principal, conversation_id, owner, most))


class PgFairUseStore(PgBase):
    async def take_request(self, principal: str, limit: int, window: float = 60.0) -> float:
        async def take(c: Conn) -> float:
            if await c.fetchval(TAKE, principal, limit, window) is not None:
                return 0.0
            hits, now = await c.fetchrow(
                "SELECT hits, extract(epoch FROM statement_timestamp())::float8 FROM rate_limits WHERE principal = $1",
                principal,
            )
            recent = [h for h in hits if h > now - window]
            return max(recent[-limit] + window - now, 0.001) if len(recent) >= limit else 0.001

        return await self.database.write(take)

    async def wait_start(self, conversation_id: str, principal: str, within: float) -> None:
        await self.database.wait_any([("conv_turn", conversation_id), ("conv_slot", principal)], within)
