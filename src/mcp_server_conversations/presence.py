"""Which server processes have a database open: a shared advisory lock on a file beside it.

At start the runtime marks runs left `queued`/`running` as interrupted, since the process that ran
them died. Replicas (`--stateless` behind a load balancer) share one database file, and a live
replica's runs in flight look exactly like a dead process's; so the sweep runs only when no other
live process holds the database. A killed process's lock is released by the kernel.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, every start sweeps
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("mcp_server_conversations.presence")


class Presence:
    """This process's membership among the processes using one database file."""

    def __init__(self, db_path: Path | str) -> None:
        self.path = None if str(db_path) == ":memory:" else Path(f"{db_path}-runs.lock")
        self._fd: int | None = None

    def join(self) -> bool:
        """Register this process; True if no other live process has the database open."""
        if self.path is None or fcntl is None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(fd, fcntl.LOCK_SH)  # stay registered, and let later processes in
        self._fd = fd
        return alone

    def leave(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
