"""Which server processes have a database open: advisory locks on files beside it.

At start the runtime marks runs left `queued`/`running` as interrupted, since the process that ran
them died. Replicas (`--stateless` behind a load balancer, or two clients each spawning a stdio
server on the default file) share one database, and a live replica's runs in flight look exactly
like a dead process's; so the sweep runs only when no other live process holds the database. A
killed process's locks are released by the kernel.

Each process also holds an exclusive lock on a file of its own (`<db>-owners/<owner>.lock`), so
another process can tell whether the owner of a conversation's turn (storage `turns`) is alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, every start sweeps
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("mcp_server_conversations.storage.presence")


class Presence:
    """This process's membership among the processes using one database file."""

    def __init__(self, db_path: Path | str) -> None:
        self.path = None if str(db_path) == ":memory:" else Path(f"{db_path}-runs.lock")
        self.owners = None if self.path is None else Path(f"{db_path}-owners")
        self.owner = uuid.uuid4().hex  # names this process in `turns`
        self._fd: int | None = None
        self._owner_fd: int | None = None

    def join(self) -> bool:
        """Register this process; True if no other live process has the database open."""
        if self.path is None or self.owners is None or fcntl is None:
            return True
        self.owners.mkdir(mode=0o700, exist_ok=True)
        owner_fd = os.open(self.owners / f"{self.owner}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(owner_fd, fcntl.LOCK_EX)  # new file, ours alone: held while this process lives
        self._owner_fd = owner_fd
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(fd, fcntl.LOCK_SH)  # stay registered, and let later processes in
        self._fd = fd
        for path in self.owners.glob("*.lock"):  # files of processes that were killed: alive() removes them
            self.alive(path.stem)
        return alone

    def alive(self, owner: str) -> bool:
        """Whether the process named `owner` still runs (a file lock only it holds). Without advisory
        locks (Windows) every other owner counts as alive: a start that finds itself alone clears them."""
        if owner == self.owner:
            return True
        if self.owners is None:
            return False  # an in-memory database has no other processes
        if fcntl is None:
            return True
        path = self.owners / f"{owner}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()  # a dead owner's file
        return False

    def leave(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
        if self._owner_fd is not None:
            if self.owners is not None:
                with contextlib.suppress(OSError):
                    (self.owners / f"{self.owner}.lock").unlink()
            os.close(self._owner_fd)
            self._owner_fd = None
