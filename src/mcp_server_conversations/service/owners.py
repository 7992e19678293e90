"""Whose each id is: the one check every operation on an id passes before it acts.

An agent belongs to the principal that made it, and its blocks, conversations, messages and runs
with it. The services (and the runtime) call `check` right where the store would report an unknown
id, so another principal's id fails exactly as an unknown one does: the same NotFoundError, at the
same point, before anything is read or changed.
"""

from __future__ import annotations

from typing import Literal

from .. import principals
from ..errors import NotFoundError
from ..storage import Store

Kind = Literal["agent", "conversation", "run", "block", "message"]
CACHE_MAX = 100_000  # ids remembered; an id's principal never changes, so entries never go stale


class Owners:
    """Checks ids against the acting principal (principals.current())."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._known: dict[tuple[str, str], str] = {}

    async def principal_of(self, kind: Kind, key: str) -> str | None:
        """Who `key` belongs to, None if it names nothing (remembered once known: it never changes)."""
        found = self._known.get((kind, key))
        if found is None:
            found = await self.store.principal_of(kind, key)
            if found is not None:
                if len(self._known) >= CACHE_MAX:
                    self._known.clear()
                self._known[(kind, key)] = found
        return found

    async def check(self, kind: Kind, key: str, *, report: tuple[str, str] | None = None) -> None:
        """NotFoundError (`report`: the kind and id to name, if not these) unless `key` is the acting
        principal's."""
        if not isinstance(key, str) or await self.principal_of(kind, key) != principals.current():
            name, ident = report or (kind, key)
            raise NotFoundError(name, ident)

    def mine(self, principal: str | None) -> bool:
        """Whether a principal read along with a row (SendTarget.principal) is the acting one."""
        return principal is not None and principal == principals.current()
