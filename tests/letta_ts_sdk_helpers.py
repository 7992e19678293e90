"""Letta's TypeScript SDK (`@letta-ai/letta-client`) as a real client of the server.

- `letta_ts_sdk_modules()`: a `node_modules` holding the pinned SDK, installed once under the
  repository's git-ignored `.cache/letta-client/<version>/` by `npm pack` (checked against its sha256)
  and unpacking; the SDK has no runtime dependencies. Skips the calling test with the reason when node,
  npm or the package cannot be had, unless CONVERSATIONS_REQUIRE_LETTA_CODE=1 (CI), which fails it
  (the same switch as Letta Code's tests: letta_code_helpers).
- `run_node_script(source, modules, env)`: writes an ES module beside a link to that `node_modules`, so
  `import Letta from "@letta-ai/letta-client"` resolves as in a user's project, and runs it with node.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from letta_code_helpers import _run, _unavailable

VERSION = "1.12.1"  # the TypeScript twin of letta-client 1.12.1, the Python SDK the other REST tests use
SHA256 = "0b0d2c70c70940c55b2333bdbc423ed1ec2fc9998c0050ab6a205d5fbf92115b"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "letta-client" / VERSION
RUN_TIMEOUT = 120.0  # bounds a hang; asserts nothing about speed


def _install(target: Path) -> str | None:
    """Install into `target` (built aside, then renamed into place); the reason it failed, or None."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        packed = _run([npm, "pack", f"@letta-ai/letta-client@{VERSION}", "--silent"], work)
        tgz = work / f"letta-ai-letta-client-{VERSION}.tgz"
        if packed.returncode != 0 or not tgz.exists():
            return f"npm pack failed: {(packed.stderr or packed.stdout).strip()[-500:]}"
        digest = hashlib.sha256(tgz.read_bytes()).hexdigest()
        if digest != SHA256:
            return f"the packed tarball's sha256 is {digest}, expected {SHA256}"
        with tarfile.open(tgz) as tar:
            tar.extractall(work, filter="data")
        scope = work / "root" / "node_modules" / "@letta-ai"
        scope.mkdir(parents=True)
        (work / "package").rename(scope / "letta-client")
        if not target.exists():
            (work / "root").rename(target)
    return None


def letta_ts_sdk_modules() -> Path:
    """The `node_modules` directory holding the pinned SDK, installed on first use."""
    if shutil.which("node") is None:
        _unavailable("node is not on PATH", what=f"@letta-ai/letta-client {VERSION}")
    modules = CACHE / "node_modules"
    if not (modules / "@letta-ai" / "letta-client" / "package.json").exists():
        reason = _install(CACHE)
        if reason is not None:
            _unavailable(reason, what=f"@letta-ai/letta-client {VERSION}")
    return modules


def run_node_script(source: str, modules: Path, workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `source` as an ES module (top-level await allowed) from `workdir`, which gets the SDK."""
    workdir.mkdir(parents=True, exist_ok=True)
    link = workdir / "node_modules"
    if not link.exists():
        link.symlink_to(modules, target_is_directory=True)
    script = workdir / "page.mjs"
    script.write_text(source)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LETTA_", "CONVERSATIONS_", "OPENAI_"))}
    return subprocess.run(
        ["node", str(script)],
        cwd=workdir,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
