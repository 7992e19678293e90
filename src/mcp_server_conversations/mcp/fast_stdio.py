"""stdio pipes served on the event loop itself.

The SDK's `stdio_server()` reads and writes through anyio's file wrappers, which hand every line
read and every write and flush to a worker thread: three thread hand-offs per message, about a
third of a millisecond of each tool call's round trip here and more for each streamed progress
notification. When stdin and stdout are pipes or sockets (how MCP clients spawn servers), this
module gives the same `stdio_server()` non-blocking streams on the loop instead; it still parses
and frames every message. Anything else (a terminal, a file, Windows) keeps the SDK's own path.

Like the SDK, it keeps the wire for itself: while serving, fd 0 reads /dev/null and fd 1 writes
to stderr, so a stray print() or child process cannot corrupt the protocol; both are restored
on exit, with the descriptors back in blocking mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.stdio import stdio_server

_CHUNK = 1 << 16


def _pipe_like(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _same_file(a: int, b: int) -> bool:
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def usable() -> bool:
    """Pipes or sockets on both ends, and stdout not shared with stderr (a non-blocking wire would
    make stderr writes fail with EAGAIN when the two are one pipe)."""
    return sys.platform != "win32" and _pipe_like(0) and _pipe_like(1) and not _same_file(1, 2)


class LineReader:
    """`async for line in reader` over a StreamReader: str lines of any length, as anyio's file gives."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        parts: list[bytes] = []
        while True:
            try:
                parts.append(await self._reader.readuntil(b"\n"))
                break
            except asyncio.LimitOverrunError as e:  # a line longer than the buffer: take what is there
                parts.append(await self._reader.readexactly(e.consumed))
            except asyncio.IncompleteReadError as e:  # EOF: a last line without a newline, or the end
                if e.partial:
                    parts.append(e.partial)
                break
        if not parts or not any(parts):
            raise StopAsyncIteration
        return b"".join(parts).decode("utf-8", errors="replace")


class PipeWriter:
    """`write` queues the encoded text on the pipe's transport; `flush` waits while the pipe is full."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


def _grow_pipe(fd: int) -> None:
    """Ask Linux for a 1 MiB pipe buffer (the unprivileged maximum by default): a large result then
    leaves in one write instead of 64 KiB at a time, one loop pass each, as the client drains it."""
    if sys.platform.startswith("linux") and stat.S_ISFIFO(os.fstat(fd).st_mode):
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)


def _dup_above_std(fd: int) -> int:
    dup = os.dup(fd)
    while dup <= 2:  # keep the private copy out of the standard range
        dup = os.dup(fd)
    return dup


@contextlib.asynccontextmanager
async def _claimed_pipes() -> AsyncIterator[tuple[LineReader, PipeWriter]]:
    loop = asyncio.get_running_loop()
    rfd, wfd = _dup_above_std(0), _dup_above_std(1)
    saved_in, saved_out = _dup_above_std(0), _dup_above_std(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    transports: list[asyncio.BaseTransport] = []
    try:
        reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
        rt, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(rfd, "rb", buffering=0)
        )
        transports.append(rt)
        _grow_pipe(wfd)
        wt, wp = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(wfd, "wb", buffering=0))
        transports.append(wt)
        writer = asyncio.StreamWriter(wt, wp, None, loop)
        yield LineReader(reader), PipeWriter(writer)
        with contextlib.suppress(Exception):  # let what is queued reach the client
            await asyncio.wait_for(writer.drain(), 5)
    finally:
        for t in transports:
            t.close()
        await asyncio.sleep(0)  # the transports close their pipes on the next loop pass
        for fd, saved in ((0, saved_in), (1, saved_out)):
            os.dup2(saved, fd)
            os.close(saved)
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)


@contextlib.asynccontextmanager
async def serve_stdio() -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's `stdio_server()` streams, over loop-driven pipes where that is safe."""
    if not usable():
        async with stdio_server() as streams:
            yield streams
        return
    async with _claimed_pipes() as (stdin, stdout), stdio_server(stdin=stdin, stdout=stdout) as streams:  # type: ignore[arg-type]
        yield streams
