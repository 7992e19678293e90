"""A real full filesystem for the database: a small tmpfs mounted for the test (needs root; the test
is skipped, with the reason, otherwise). `disk.fill()` takes every free byte with a filler file, so
SQLite's next write that needs a new page fails with SQLITE_FULL; `disk.free()` gives it back."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SIZE = "16m"


@dataclass
class SmallDisk:
    path: Path  # the mount point: put the database here

    @property
    def filler(self) -> Path:
        return self.path / "filler"

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                block = b"\0" * size
                while True:
                    try:
                        os.write(fd, block)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        reason = "a full filesystem needs a tmpfs mount, which needs root"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        reason = f"could not mount a tmpfs: {done.stderr.strip() or done.returncode}"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    disk = SmallDisk(mount)
    try:
        yield disk
    finally:
        disk.free()
        subprocess.run(["umount", "-l", str(mount)], check=False)
