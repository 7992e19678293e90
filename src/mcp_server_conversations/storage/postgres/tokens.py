"""Named tokens in PostgreSQL: only a hash of each is stored, so every replica knows them."""

from __future__ import annotations

from ...errors import ConflictError
from ...util import now_iso
from ..tokens import COLUMNS, token_from_row
from ..types import TokenInfo
from .base import Conn, PgBase


class PgTokenStore(PgBase):
    async def create_token(self, name: str, token_hash: str) -> TokenInfo:
        created = now_iso()

        async def create(c: Conn) -> TokenInfo:
            # The partial unique index decides between racing creators: the loser inserts nothing.
            inserted = await c.fetchval(
                "INSERT INTO tokens (token_hash, name, created_at) VALUES ($1, $2, $3) "
                "ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING RETURNING 1",
                token_hash,
                name,
                created,
            )
            if inserted is None:
                raise ConflictError(f"a token named {name!r} already exists; revoke it first")
            return TokenInfo(name=name, created_at=created, last_used_at=None, revoked_at=None)

        return await self.database.write(create)

    async def revoke_token(self, name: str) -> bool:
        async def revoke(c: Conn) -> bool:
            status = await c.execute(
                "UPDATE tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL", now_iso(), name
            )
            return status != "UPDATE 0"

        return await self.database.write(revoke)

    async def list_tokens(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = await self._all(f"SELECT {COLUMNS} FROM tokens {where} ORDER BY name, created_at")
        return [token_from_row(r) for r in rows]

    async def token_name(self, token_hash: str) -> str | None:
        row = await self._one("SELECT name FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL", token_hash)
        return None if row is None else str(row["name"])

    async def any_tokens(self) -> bool:
        return await self._one("SELECT 1 FROM tokens WHERE revoked_at IS NULL LIMIT 1") is not None

    async def touch_tokens(self, used: dict[str, str]) -> None:
        if not used:
            return
        params = [(at, token_hash) for token_hash, at in used.items()]

        async def touch(c: Conn) -> None:
            await c.executemany(
                "UPDATE tokens SET last_used_at = $1 WHERE token_hash = $2 "
                "AND (last_used_at IS NULL OR last_used_at < $1)",
                params,
            )

        await self.database.write(touch)
