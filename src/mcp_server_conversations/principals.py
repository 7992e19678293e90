"""Who a request acts for.

Every request acts for one principal: `local` (stdio, no auth, the single --auth-token), a named
token (`token:NAME`) or an OAuth subject (`oauth:SUB`). The prefixes keep the three apart: an
OAuth `sub` equal to `local` or to a token's name is a different principal.

The transports decide the principal once, at their edge, and enter it with `acting_as`; the
services read it with `current()`. A context variable rather than a parameter on every call
because the principal is a property of the whole request (and of the tasks it starts: a
background run keeps acting for the principal that sent it), not of any one operation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

LOCAL = "local"

_current: ContextVar[str] = ContextVar("mcp_server_conversations_principal", default=LOCAL)


def current() -> str:
    """The principal the running request (or run) acts for; `local` outside any request."""
    return _current.get()


@contextmanager
def acting_as(principal: str) -> Iterator[str]:
    """Act for `principal` inside the block (and in tasks started from it)."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)


def for_token(name: str) -> str:
    """The principal a named token acts for."""
    return f"token:{name}"


def for_oauth(subject: str) -> str:
    """The principal an OAuth access token acts for (its `sub` claim)."""
    return f"oauth:{subject}"


def display(principal: str) -> str:
    """A principal as people read it: the token's name or the subject, `local` as is."""
    return principal.partition(":")[2] or principal
