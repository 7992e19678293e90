"""Named tokens: only a hash of each is stored, so every process sharing the database knows them."""

from __future__ import annotations

import sqlite3
from typing import Any

from ..errors import ConflictError
from ..util import now_iso
from .base import SQLiteBase
from .types import TokenInfo

COLUMNS = "name, created_at, last_used_at, revoked_at"


def token_from_row(row: Any) -> TokenInfo:
    """From a sqlite3.Row or an asyncpg Record."""
    return TokenInfo(
        name=str(row["name"]),
        created_at=str(row["created_at"]),
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


class TokenStore(SQLiteBase):
    async def create_token(self, name: str, token_hash: str) -> TokenInfo:
        def create(db: sqlite3.Connection) -> TokenInfo:
            if db.execute("SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone():
                raise ConflictError(f"a token named {name!r} already exists; revoke it first")
            created = now_iso()
            db.execute(
                "INSERT INTO tokens (token_hash, name, created_at) VALUES (?, ?, ?)", (token_hash, name, created)
            )
            return TokenInfo(name=name, created_at=created, last_used_at=None, revoked_at=None)

        return await self.database.write(create)

    async def revoke_token(self, name: str) -> bool:
        def revoke(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now_iso(), name)
            )
            return cur.rowcount > 0

        return await self.database.write(revoke)

    async def list_tokens(self, *, include_revoked: bool = False) -> list[TokenInfo]:
        where = "" if include_revoked else "WHERE revoked_at IS NULL"
        rows = await self._all(f"SELECT {COLUMNS} FROM tokens {where} ORDER BY name, created_at")
        return [token_from_row(r) for r in rows]

    async def token_name(self, token_hash: str) -> str | None:
        row = await self._one("SELECT name FROM tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,))
        return None if row is None else str(row["name"])

    async def any_tokens(self) -> bool:
        return await self._one("SELECT 1 FROM tokens WHERE revoked_at IS NULL LIMIT 1") is not None

    async def touch_tokens(self, used: dict[str, str]) -> None:
        if not used:
            return
        params = [(at, token_hash, at) for token_hash, at in used.items()]

        def touch(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE tokens SET last_used_at = ? WHERE token_hash = ? "
                "AND (last_used_at IS NULL OR last_used_at < ?)",
                params,
            )

        await self.database.write(touch)
