"""The `copy` command: one database's whole content into another, with progress on stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import is_database_url, redacted
from .errors import ConversationsError
from .storage import copy_store, open_store


def _location(text: str) -> str | Path:
    return text if is_database_url(text) else Path(os.path.expanduser(text))


async def copy_databases(source: str, target: str) -> int:
    """Exit status: 0 copied, 1 refused or failed (the reason on stderr)."""
    if not is_database_url(source) and not Path(os.path.expanduser(source)).exists():
        print(f"copy: no database at {source}", file=sys.stderr)
        return 1
    try:
        src = await open_store(_location(source))
    except ConversationsError as e:
        print(f"copy: cannot open {redacted(source)}: {e}", file=sys.stderr)
        return 1
    try:
        dst = await open_store(_location(target))
    except ConversationsError as e:
        await src.close()
        print(f"copy: cannot open {redacted(target)}: {e}", file=sys.stderr)
        return 1
    try:
        print(f"copy: {src.location} -> {dst.location}", file=sys.stderr)

        def progress(table: str, rows: int) -> None:
            print(f"copy: {table}: {rows} rows", file=sys.stderr, flush=True)

        copied = await copy_store(src, dst, progress)
    except ConversationsError as e:
        print(f"copy: {e}", file=sys.stderr)
        return 1
    finally:
        await src.close()
        await dst.close()
    print("copy: done (" + ", ".join(f"{n} {t}" for t, n in copied.items()) + ")", file=sys.stderr)
    return 0
