"""Letta Code's interactive UI driven through a pseudo-terminal, as a user at a keyboard would.

`Tui(letta, *args)` starts `node letta.js *args` on a pty (a wide window, so lines do not wrap),
reads its screen output in a thread, and offers `type`, `enter`, `submit` and `wait_for(text)`, which waits
(bounded) for text to appear in the output written after a mark, escape sequences stripped. The
process is terminated on `close()` (its own id only)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time

from letta_code_helpers import LettaCode

ROWS, COLS = 60, 250
WAIT = 90.0  # bounds a wait for the screen; asserts nothing about speed
# CSI and OSC sequences, then any other two-byte escape.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


class Tui:
    def __init__(self, letta: LettaCode, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**letta.env(), "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        self.proc = subprocess.Popen(
            ["node", str(letta.js), *args],
            cwd=letta.ensure_project(),
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self._master = master
        self._raw = bytearray()
        self._lock = threading.Lock()
        self._mark = 0
        threading.Thread(target=self._read, daemon=True, name="letta-tui").start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # the child closed the terminal
                return
            if not data:
                return
            with self._lock:
                self._raw.extend(data)

    def output(self, since: int = 0) -> str:
        with self._lock:
            raw = bytes(self._raw[since:])
        return _ESCAPES.sub("", raw.decode(errors="replace"))

    def mark(self) -> None:
        """Later waits look only at output written from now on."""
        with self._lock:
            self._mark = len(self._raw)

    def wait_for(self, text: str, timeout: float = WAIT) -> None:
        self.wait_for_any(text, timeout=timeout)

    def wait_for_any(self, *texts: str, timeout: float = WAIT) -> str:
        """The first of `texts` to appear after the mark."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.output(self._mark)
            for text in texts:
                if text in screen:
                    return text
            if self.proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited {self.proc.returncode}" if self.proc.poll() is not None else "timed out"
                raise AssertionError(f"{texts!r} never appeared ({state}); screen output:\n{self.output()[-4000:]}")
            time.sleep(0.1)

    def type(self, text: str) -> None:
        """Type `text` and wait until the prompt shows it: a return key sent in the same burst as the
        text is read as part of a paste, not as a submit."""
        self.mark()
        os.write(self._master, text.encode())
        self.wait_for(text)

    def enter(self) -> None:
        os.write(self._master, b"\r")

    def submit(self, text: str, then: str) -> None:
        """Type `text`, press return, and wait for `then` on the screen."""
        self.type(text)
        self.mark()
        self.enter()
        self.wait_for(then)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._master)
