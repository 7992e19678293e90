"""Named tokens: the `tokens` command (create, list, revoke) and what the HTTP guard needs to check
one. A token is shown once, when created; the database keeps only its SHA-256, which is enough to
recognize it (tokens are random, so a fast hash does not weaken them) and useless to a reader of a
backup.

The command never runs beside the MCP protocol (it is its own process), so its stdout is its result:
the new token alone (scripts capture it) or the `list` table; everything else goes to stderr."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .config import default_db_path, is_database_url, redacted
from .errors import ConflictError, ConversationsError

if TYPE_CHECKING:
    from .storage import Store

# A recognizable prefix lets secret scanners and people tell what a leaked string is.
PREFIX = "mcsc_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
NAME_RULE = "1-64 characters: letters, digits and . _ @ + -, starting with a letter or digit"


def new_token() -> str:
    """256 random bits, URL-safe (no dots: never mistaken for a JWT), behind the prefix."""
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str | bytes) -> str:
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a token, or None."""
    if NAME_PATTERN.fullmatch(name):
        return None
    return f"invalid token name {name!r}: {NAME_RULE}"


def _location(text: str | None) -> str | Path:
    text = text or os.environ.get("CONVERSATIONS_DB") or str(default_db_path())
    return text if is_database_url(text) else Path(os.path.expanduser(text))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="mcp-server-conversations tokens",
        description="Named bearer tokens for HTTP clients, stored hashed in the database so every server "
        "sharing it accepts them (and refuses a revoked one at once).",
    )
    p.add_argument("--db", help="SQLite file or postgresql:// URL (default: CONVERSATIONS_DB, else the user's)")
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="make a token for NAME; prints the token alone on stdout, once")
    create.add_argument("name")
    listing = sub.add_parser("list", help="names, creation and last use (never the tokens)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    revoke = sub.add_parser("revoke", help="refuse NAME's token from now on, on every server")
    revoke.add_argument("name")
    for parser in (create, listing, revoke):  # --db after the subcommand works too
        parser.add_argument("--db", dest="sub_db", help=argparse.SUPPRESS)
    return p.parse_args(argv)


async def tokens_command(argv: list[str]) -> int:
    """Exit status: 0 done, 1 refused (an existing name, an unknown one, an unreachable database),
    2 bad arguments."""
    args = parse_args(argv)
    if args.command in ("create", "revoke") and (problem := name_problem(args.name)):
        print(f"tokens: {problem}", file=sys.stderr)
        return 2
    location = _location(args.sub_db or args.db)
    from .storage import open_store

    try:
        store = await open_store(location)
    except (ConversationsError, OSError) as e:
        print(f"tokens: cannot open {redacted(location)}: {e}", file=sys.stderr)
        return 1
    try:
        return await _run(store, args)
    except ConversationsError as e:
        print(f"tokens: {e}", file=sys.stderr)
        return 1
    finally:
        await store.close()


async def _run(s: Store, args: argparse.Namespace) -> int:
    if args.command == "create":
        token = new_token()
        try:
            await s.create_token(args.name, token_hash(token))
        except ConflictError as e:
            print(f"tokens: {e}", file=sys.stderr)
            return 1
        print(token, flush=True)
        print(f"tokens: created {args.name!r} in {s.location}; it is shown only now", file=sys.stderr)
        return 0
    if args.command == "revoke":
        if not await s.revoke_token(args.name):
            print(f"tokens: no active token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"tokens: revoked {args.name!r}", file=sys.stderr)
        return 0
    rows = await s.list_tokens(include_revoked=args.all)
    header = ["NAME", "CREATED", "LAST USED"] + (["REVOKED"] if args.all else [])
    table = [header] + [
        [t.name, t.created_at, t.last_used_at or "never"] + ([t.revoked_at or "-"] if args.all else []) for t in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0
