"""A PostgreSQL database behind an asyncpg pool: units of work, notifications and presence.

asyncpg rather than psycopg: its Record fits the row converters shared with SQLite, it moves
`bigint[]` and `bytea` in binary, caches prepared statements and has `add_listener`. The pool's
`reset` is a no-op: asyncpg's default (`UNLISTEN *; RESET ALL …`) costs one more round trip on every
release, about the price of a short query; pooled connections keep no session state here (no
LISTEN, no session locks, no SET), so there is nothing to reset. Two connections per process stay
out of the pool: the presence connection holds this process's session advisory lock, and the
listener connection LISTENs for the wake-ups of `wait_*`.

Every unit of work is one transaction on one pooled connection, run as a task the caller awaits
through `asyncio.shield`: a cancelled caller stops waiting, the unit still commits or rolls back
whole (as SQLite's writer thread finishes a unit handed in). Connection and resource failures become
errors.StorageUnavailableError here and nowhere else.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from ...config import redacted
from ...errors import StorageUnavailableError
from .schema import migrate

T = TypeVar("T")
log = logging.getLogger("mcp_server_conversations.storage.postgres")

PRESENCE_CLASS = 0x636F6E76  # advisory lock class of the presence locks ("conv"); the key is hashtext(owner)
CHANNELS = ("conv_turn", "conv_cancel", "conv_run_done", "conv_slot", "conv_change", "conv_vectors")
CHANGES_KEPT = 10_000  # conv_change notifications kept for readers of changes_since; a slower reader resyncs
# SQLSTATE classes meaning the server or its resources failed, not the request: connection exceptions,
# insufficient resources (disk full, out of memory, too many connections), operator intervention (shutdown),
# system errors (I/O).
UNAVAILABLE_CLASSES = ("08", "53", "57", "58")
RETRIED = ("40001", "40P01")  # serialization failure, deadlock: the unit runs again
SERVER_SETTINGS = {"jit": "off", "application_name": "mcp-server-conversations"}
# The presence connection's server side probes the client: a replica whose machine died (no FIN, no RST)
# loses its lock, and its runs count as dead, within about idle + interval × count seconds.
PRESENCE_SETTINGS = {
    **SERVER_SETTINGS,
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Pooled connections keep no session state: nothing to reset (saves a round trip per release)."""


def translate(error: BaseException) -> BaseException:
    """The exception callers see for a failure of the database: StorageUnavailableError when the
    server, the network or the server's resources failed; anything else as it is."""
    if isinstance(error, StorageUnavailableError):
        return error
    state = getattr(error, "sqlstate", None) or ""
    if state[:2] in UNAVAILABLE_CLASSES or state == "25006":  # 25006: read-only transaction (a standby)
        return StorageUnavailableError(f"the database is unavailable: {error}")
    if isinstance(error, (OSError, asyncio.TimeoutError, ConnectionError)) or (
        isinstance(error, asyncpg.InterfaceError) and "connection" in str(error)  # "connection is closed"
    ):
        return StorageUnavailableError(f"the database is unreachable: {error}")
    return error


class Database:
    """The pool, the listener and the presence connection of one PostgreSQL database."""

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self.location = redacted(url)
        self.pool = pool
        self.trips = 0  # units of work run (bench and tests count a send's)
        self.writes = 0  # write units committed by this process
        self._listener: asyncpg.Connection | None = None
        self._listening: asyncio.Lock = asyncio.Lock()
        self._waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        # conv_change notifications, numbered in arrival (commit) order; ("?", "") marks a gap (the listener
        # reconnected, so notifications may have been missed meanwhile).
        self._changes: collections.deque[tuple[int, str, str]] = collections.deque(maxlen=CHANGES_KEPT)
        self._change_seq = 0
        self._change_signal = asyncio.Event()
        self._listeners_made = 0
        self.instance = uuid.uuid4().hex  # this process, in the notifications it sends
        self.vector_notes: dict[str, int] = {}  # per agent: vectors stored by other processes, as notified
        self.listen_epoch = 0  # listener connections made: notifications may have been missed in between
        self.claimed: set[int] = set()  # message keys whose embedding this process holds a claim on
        self._claims: asyncpg.Connection | None = None
        self._claiming = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> Database:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=10,
                reset=_no_reset,
                server_settings=SERVER_SETTINGS,
                timeout=10,
            )
        except Exception as e:
            raise translate(e) from e
        db = cls(url, pool)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except BaseException as e:
            await pool.close()
            translated = translate(e)
            if translated is e:
                raise
            raise translated from e
        return db

    async def close(self) -> None:
        for task in list(self._tasks):
            try:
                await task
            except BaseException:  # its caller was told already
                pass
        if self._claims is not None:
            claims, self._claims = self._claims, None
            claims.terminate()  # its session's claims go with it
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                await asyncio.wait_for(listener.close(), 5)
            except Exception:
                listener.terminate()
        try:
            await asyncio.wait_for(self.pool.close(), 10)
        except Exception:
            self.pool.terminate()

    # -- units of work --

    async def write(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn(connection)` as one READ COMMITTED transaction (it takes the row locks it needs)."""
        return await self._run(fn, write=True)

    async def read(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, snapshot: bool = False) -> T:
        """`fn(connection)` reading committed data; with `snapshot`, all its statements read one
        snapshot (REPEATABLE READ, read only)."""
        return await self._run(fn, write=False, snapshot=snapshot)

    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], *, write: bool, snapshot: bool = False) -> T:
        self.trips += 1
        task = asyncio.ensure_future(self._unit(fn, write, snapshot))
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller cancelled meanwhile is not there to see it

    async def _unit(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], write: bool, snapshot: bool) -> T:
        for attempt in range(5):
            try:
                async with self.pool.acquire() as conn:
                    if write:
                        async with conn.transaction():
                            result = await fn(conn)
                        self.writes += 1
                        return result
                    if snapshot:
                        async with conn.transaction(isolation="repeatable_read", readonly=True):
                            return await fn(conn)
                    return await fn(conn)
            except asyncpg.PostgresError as e:
                if e.sqlstate in RETRIED and attempt < 4:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                translated = translate(e)
                if translated is e:
                    raise
                raise translated from e
            except (TimeoutError, asyncpg.InterfaceError, OSError, ConnectionError) as e:
                raise translate(e) from e
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        await self.read(lambda conn: conn.fetchval("SELECT 1"))

    # -- wake-ups (LISTEN/NOTIFY) --

    async def wait(self, channel: str, key: str, within: float) -> None:
        """Until `key` is notified on `channel`, or `within` seconds (also when notifications are down)."""
        await self.wait_any([(channel, key)], within)

    async def wait_any(self, keys: list[tuple[str, str]], within: float) -> None:
        """Until one of the (channel, key) pairs is notified, or `within` seconds."""
        if not await self._listen():
            await asyncio.sleep(within)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, set()).add(future)
        try:
            await asyncio.wait_for(future, within)
        except TimeoutError:
            pass
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(future)
                    if not waiters:
                        del self._waiters[key]

    async def _listen(self) -> bool:
        if self._listener is not None and not self._listener.is_closed():
            return True
        async with self._listening:
            if self._listener is not None and not self._listener.is_closed():
                return True
            try:
                conn = await asyncpg.connect(self.url, server_settings=SERVER_SETTINGS, timeout=5)
                for channel in CHANNELS:
                    await conn.add_listener(channel, self._notified)
            except Exception:
                log.debug("no notifications from %s: waiting by polling", self.location, exc_info=True)
                return False
            self._listener = conn
            self.listen_epoch += 1
            self._listeners_made += 1
            if self._listeners_made > 1:
                self._change("?", "")
            return True

    def _change(self, kind: str, key: str) -> None:
        self._change_seq += 1
        self._changes.append((self._change_seq, kind, key))
        signal, self._change_signal = self._change_signal, asyncio.Event()
        signal.set()

    async def changes_since(self, after: int | None, within: float) -> tuple[int, list[tuple[str, str]] | None]:
        """The (kind, key) changes notified on conv_change after position `after`, waiting up to `within`
        seconds for one; (position, None) when some may have been missed. `after` None: the position now
        (listening from then on)."""
        if not await self._listen():
            await asyncio.sleep(within)
            return after or 0, []
        if after is None:
            return self._change_seq, []
        if self._change_seq <= after:
            signal = self._change_signal
            try:
                await asyncio.wait_for(signal.wait(), within)
            except TimeoutError:
                return after, []
        seq = self._change_seq
        got = [(k, key) for n, k, key in self._changes if n > after]
        if not self._changes or self._changes[0][0] > after + 1 or ("?", "") in got:
            return seq, None
        return seq, got

    async def listen(self) -> bool:
        """Make sure notifications are listened for; False when they cannot be (then poll)."""
        return await self._listen()

    def _notified(self, conn: object, pid: int, channel: str, payload: str) -> None:
        if channel == "conv_change":
            kind, _, key = payload.partition(":")
            self._change(kind, key)
        elif channel == "conv_vectors":
            sender, _, agent_id = payload.partition(" ")
            if sender != self.instance:
                self.vector_notes[agent_id] = self.vector_notes.get(agent_id, 0) + 1
            return
        for future in self._waiters.get((channel, payload), ()):
            if not future.done():
                future.set_result(None)

    # -- claims held by this process (session advisory locks on a connection of its own) --

    async def on_claims(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`fn(connection)` on the claims connection, one caller at a time. Its session holds this
        process's claims: when it is lost, so are they (`claimed` is emptied) and it is made again."""
        async with self._claiming:
            if self._claims is None or self._claims.is_closed():
                self.claimed.clear()
                try:
                    self._claims = await asyncpg.connect(self.url, server_settings=PRESENCE_SETTINGS, timeout=10)
                except Exception as e:
                    raise translate(e) from e
            try:
                return await fn(self._claims)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ConnectionError) as e:
                translated = translate(e)
                if translated is e:
                    raise
                raise translated from e


class PgPresence:
    """This process's membership: a session advisory lock held on a connection of its own. The server
    releases it when the process (or its connection) dies, so `conv_owner_alive(owner)` in SQL, which
    looks it up in pg_locks, tells whether a turn's holder still runs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.owner = uuid.uuid4().hex
        self._conn: asyncpg.Connection | None = None

    async def join(self) -> bool:
        """Take this process's lock; True if no other process holds one on this database."""
        if self._conn is None:
            try:
                conn = await asyncpg.connect(self.db.url, server_settings=PRESENCE_SETTINGS, timeout=10)
                await conn.execute("SELECT pg_advisory_lock($1, hashtext($2))", PRESENCE_CLASS, self.owner)
            except Exception as e:
                raise translate(e) from e
            self._conn = conn
        others = await self._conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::bigint::oid "
            "AND objsubid = 2 AND granted AND pid <> pg_backend_pid() "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            PRESENCE_CLASS,
        )
        return int(others) == 0

    async def alive(self, owner: str) -> bool:
        if owner == self.owner:
            return True
        return bool(await self.db.read(lambda conn: conn.fetchval("SELECT conv_owner_alive($1)", owner)))

    async def leave(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), 5)
            except Exception:
                conn.terminate()
