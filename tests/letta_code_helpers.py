"""Letta Code (Letta's CLI, `@letta-ai/letta-code`) as a real client of the server, headless.

- `letta_code_path()`: the CLI's `letta.js`, installed once under the repository's git-ignored
  `.cache/letta-code/<version>/` and reused: `npm pack` of the pinned version (checked against its
  sha256), unpacked, plus its one runtime dependency `ws` (installing the package itself through npm
  fails on dependencies it does not need headless). Skips the calling test with the reason when node,
  npm or the package cannot be had, unless CONVERSATIONS_REQUIRE_LETTA_CODE=1 (CI), which fails it.
- `LettaCode(js, base_url, home)`: runs `node letta.js ...` with a throwaway HOME and a git project
  as working directory, telemetry and auto-update off, and returns the parsed JSON result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

VERSION = "0.32.18"
SHA256 = "828ee8abec16b8cfb8bb15267ba50a4fea0638f2167cb419edb766b5b53dfe25"
WS = "ws@^8.23.1"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "letta-code" / VERSION
# Read at import: the suite's autouse fixture clears CONVERSATIONS_* from each test's environment.
REQUIRED = os.environ.get("CONVERSATIONS_REQUIRE_LETTA_CODE", "") not in ("", "0")
RUN_TIMEOUT = 120.0  # bounds a hang; asserts nothing about speed


def _unavailable(reason: str, what: str = f"Letta Code {VERSION}") -> None:
    message = f"{what} is not available: {reason}"
    if REQUIRED:
        pytest.fail(message + " (CONVERSATIONS_REQUIRE_LETTA_CODE is set)", pytrace=False)
    pytest.skip(message)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def _install(target: Path) -> str | None:
    """Install into `target` (built aside, then renamed into place); the reason it failed, or None."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        packed = _run([npm, "pack", f"@letta-ai/letta-code@{VERSION}", "--silent"], work)
        tgz = work / f"letta-ai-letta-code-{VERSION}.tgz"
        if packed.returncode != 0 or not tgz.exists():
            return f"npm pack failed: {(packed.stderr or packed.stdout).strip()[-500:]}"
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        if digest != SHA256:
            return f"the packed tarball's sha256 is {digest}, expected {SHA256}"
        with tarfile.open(tgz) as tar:
            tar.extractall(work, filter="data")
        deps = work / "deps"
        deps.mkdir()
        (deps / "package.json").write_text('{"name": "letta-code-deps", "version": "1.0.0"}')
        installed = _run([npm, "install", "--silent", "--no-audit", "--no-fund", WS], deps)
        if installed.returncode != 0:
            return f"npm install {WS} failed: {(installed.stderr or installed.stdout).strip()[-500:]}"
        (work / "package" / "node_modules").mkdir(exist_ok=True)
        shutil.move(deps / "node_modules" / "ws", work / "package" / "node_modules" / "ws")
        try:
            (work / "package").rename(target)
        except OSError:  # another test process installed it first
            if not target.exists():
                raise
    return None


def letta_code_path() -> Path:
    """`letta.js` of the pinned Letta Code, installed on first use (see the module docstring)."""
    if shutil.which("node") is None:
        _unavailable("node is not on PATH")
    js = CACHE / "letta.js"
    if not (js.exists() and (CACHE / "node_modules" / "ws").exists()):
        reason = _install(CACHE)
        if reason is not None:
            _unavailable(reason)
    return js


@dataclass
class LettaCode:
    """Runs the CLI against `base_url` as a user whose home is `home` (kept between runs)."""

    js: Path
    base_url: str
    home: Path
    token: str

    @property
    def project(self) -> Path:
        return self.home / "project"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LETTA_", "CONVERSATIONS_", "OPENAI_"))}
        env.update(
            HOME=str(self.home),
            LETTA_BASE_URL=self.base_url,
            LETTA_API_KEY=self.token,
            LETTA_CODE_TELEM="0",
            DO_NOT_TRACK="1",
            DISABLE_AUTOUPDATER="1",
            NO_COLOR="1",
        )
        return env

    def ensure_project(self) -> Path:
        if not self.project.exists():
            self.project.mkdir(parents=True)
            if shutil.which("git"):
                subprocess.run(["git", "init", "-q"], cwd=self.project, check=False)
        return self.project

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.ensure_project()
        # stdout to a file: node writes to a pipe asynchronously, and the CLI exits before a large
        # output (a long message list) has been written to one.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.run(
                ["node", str(self.js), *args],
                cwd=self.project,
                env=self.env(),
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            out.seek(0)
            proc.stdout = out.read().decode()
        if check and proc.returncode != 0:
            raise AssertionError(f"letta {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def prompt(self, text: str, *flags: str) -> dict[str, Any]:
        """`letta -p TEXT --output-format json *flags`: the parsed result object."""
        proc = self.run(*flags, "-p", text, "--output-format", "json")
        return json.loads(proc.stdout)

    def json(self, *args: str) -> Any:
        """A subcommand whose output is JSON (`agents list`, `messages list`, ...)."""
        return json.loads(self.run(*args).stdout)


class DroppingProxy:
    """A loopback TCP proxy (threads) in front of the server that cuts the response to the first message
    POST once `after` assistant chunks went through, as a dropped connection would; `dropped` is set then.
    Later requests pass untouched; `requests` records each request line."""

    def __init__(self, target_port: int, after: int = 2) -> None:
        self.target_port = target_port
        self.after = after
        self.dropped = threading.Event()
        self.requests: list[str] = []
        self._armed = True
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True, name="dropping-proxy").start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        cut = threading.Event()

        def up() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
                    if line.split(" ")[0] in ("GET", "POST", "PATCH", "DELETE"):
                        self.requests.append(line)
                        if self._armed and line.startswith("POST /v1/conversations/") and "/messages" in line:
                            self._armed = False
                            cut.set()
                    upstream.sendall(data)

        threading.Thread(target=up, daemon=True).start()
        seen = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if cut.is_set() and not self.dropped.is_set():
                    seen += data.count(b'"message_type":"assistant_message"')
                    if seen >= self.after:
                        client.sendall(data)
                        self.dropped.set()
                        break
                client.sendall(data)
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
