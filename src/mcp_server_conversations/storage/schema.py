"""Schema migrations: ordered, named, each applied once in its own transaction.

Shipped migrations are never edited; a fix is a new migration appended to MIGRATIONS.
"""

from __future__ import annotations

import sqlite3

M001_INITIAL = """
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT,                          -- null: follow the server's default model
    system TEXT NOT NULL,
    context_window_limit INTEGER,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX agents_one_default ON agents(is_default) WHERE is_default = 1;
CREATE INDEX agents_created ON agents(created_at, id);

CREATE TABLE blocks (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    label TEXT NOT NULL,
    value TEXT NOT NULL,
    description TEXT,
    char_limit INTEGER NOT NULL,
    read_only INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (agent_id, label)
);

-- A conversation's history is: its system message, then the rows it inherited when
-- forked (`inherited`, packed int64 message rowids, immutable), then the rows it
-- wrote itself (messages.conversation_id = id, in rowid order). Its context window
-- is `context`: packed rowids in prompt order. Forking copies two small blobs, never
-- message rows, so its cost does not grow with the length of the messages.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    summary TEXT,
    model TEXT,
    created_at TEXT NOT NULL,
    last_run_completion TEXT,
    forked_from_conversation_id TEXT,
    forked_from_message_id TEXT,
    system_rowid INTEGER,
    inherited BLOB NOT NULL DEFAULT x'',
    context BLOB NOT NULL DEFAULT x'',
    message_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_agent_created ON conversations(agent_id, created_at, id);
CREATE INDEX conversations_agent_completion ON conversations(agent_id, last_run_completion, id);

-- Messages keep an explicit INTEGER primary key: the FTS index is keyed by it, and it
-- gives the global write order. `home_conversation_id` is where search reports a row:
-- the writer while it exists, else a fork that still holds the row.
CREATE TABLE messages (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL,
    home_conversation_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT,
    reasoning TEXT,
    tool_calls TEXT,                     -- JSON list of {tool_call_id, name, arguments}
    tool_call_id TEXT,
    status TEXT,
    model TEXT,
    run_id TEXT,
    is_err INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    search_text TEXT                     -- what full-text search sees; null for system messages
);
CREATE INDEX messages_conversation ON messages(conversation_id);
CREATE INDEX messages_home ON messages(home_conversation_id);
CREATE INDEX messages_run ON messages(run_id) WHERE run_id IS NOT NULL;
CREATE INDEX messages_agent_created ON messages(agent_id, created_at);

CREATE VIRTUAL TABLE messages_fts USING fts5(
    search_text,
    content='messages',
    content_rowid='rowid',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.search_text IS NOT NULL BEGIN
    INSERT INTO messages_fts(rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.search_text IS NOT NULL BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF search_text ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, search_text)
        SELECT 'delete', old.rowid, old.search_text WHERE old.search_text IS NOT NULL;
    INSERT INTO messages_fts(rowid, search_text)
        SELECT new.rowid, new.search_text WHERE new.search_text IS NOT NULL;
END;

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    model TEXT,
    status TEXT NOT NULL,
    stop_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    error TEXT,
    idempotency_key TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT
);
CREATE UNIQUE INDEX runs_idempotency ON runs(conversation_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_status ON runs(status) WHERE status IN ('queued', 'running');
"""


# Bulk loads (storage/bulk.py) index a whole batch with one INSERT … SELECT into the FTS
# table: much cheaper per message than the row trigger doing it row by row (bench/storage_bench.py).
# While a bulk load's own transaction holds the row in `fts_deferred`, the insert
# trigger stands aside; other writers never see that row (it is deleted before commit).
M002_BULK_FTS = """
CREATE TABLE fts_deferred (one INTEGER PRIMARY KEY CHECK (one = 1));
DROP TRIGGER messages_fts_ai;
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages
WHEN new.search_text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM fts_deferred) BEGIN
    INSERT INTO messages_fts(rowid, search_text) VALUES (new.rowid, new.search_text);
END;
"""


# Hybrid search (embeddings.py): one vector per message for the configured embedding model,
# float32, L2-normalized. Written only by the background indexer; rows leave with their message
# (ON DELETE CASCADE). `dim` 0 with an empty vector marks a message the provider refused to embed.
M003_MESSAGE_EMBEDDINGS = """
CREATE TABLE message_embeddings (
    message_rowid INTEGER PRIMARY KEY REFERENCES messages(rowid) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX message_embeddings_agent_model ON message_embeddings(agent_id, model);
"""


# A fork's message_count is the non-system rows among the context it inherits. Reading the
# type of every inherited row made a fork's cost grow with its context; with this index a fork reads
# only the system rows in the rowid range
# of its context (a few per conversation) and subtracts them (storage/forks.py).
M004_SYSTEM_ROWS = """
CREATE INDEX messages_system_rows ON messages(rowid) WHERE message_type = 'system_message';
"""


# Index upkeep dominated inserts at scale (bench/: 1M messages). The agent index no longer
# carries created_at (no query ranges over it; it served the agent FK's cascade, which
# agent_id alone serves, in rowid order: appends). Rows are found by their home only when
# they moved to a fork (delete_conversation); the writer's own rows by conversation_id.
# FTS5 flushes its pending terms every `hashsize` bytes: 8 MiB (default 1 MiB) makes a bulk
# load's segments fewer and larger, ~30% less indexing work; small writes are unaffected.
M005_CHEAPER_INSERTS = """
DROP INDEX messages_agent_created;
CREATE INDEX messages_agent ON messages(agent_id);
DROP INDEX messages_home;
CREATE INDEX messages_home_moved ON messages(home_conversation_id) WHERE home_conversation_id != conversation_id;
INSERT INTO messages_fts(messages_fts, rank) VALUES ('hashsize', 8388608);
"""


# `search_text` repeated `content` for nearly every message: a third of the file at 1M
# messages, written twice (WAL, then the database). It is now computed (a VIRTUAL generated
# column, read by the FTS index as before) from `search_extra`, which is stored only when the
# indexed text is not simply the content (reasoning, tool calls). The triggers are made again
# for the computed column; the index itself does not change (same text for every row).
M006_COMPUTED_SEARCH_TEXT = """
DROP TRIGGER messages_fts_ai;
DROP TRIGGER messages_fts_ad;
DROP TRIGGER messages_fts_au;
ALTER TABLE messages RENAME COLUMN search_text TO search_extra;
UPDATE messages SET search_extra = NULL WHERE search_extra = content;
ALTER TABLE messages ADD COLUMN search_text TEXT GENERATED ALWAYS AS (
    CASE WHEN message_type = 'system_message' THEN NULL ELSE coalesce(search_extra, nullif(content, '')) END
) VIRTUAL;
CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages
WHEN new.search_text IS NOT NULL AND NOT EXISTS (SELECT 1 FROM fts_deferred) BEGIN
    INSERT INTO messages_fts(rowid, search_text) VALUES (new.rowid, new.search_text);
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages WHEN old.search_text IS NOT NULL BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, search_text) VALUES ('delete', old.rowid, old.search_text);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF content, search_extra, message_type ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, search_text)
        SELECT 'delete', old.rowid, old.search_text WHERE old.search_text IS NOT NULL;
    INSERT INTO messages_fts(rowid, search_text)
        SELECT new.rowid, new.search_text WHERE new.search_text IS NOT NULL;
END;
"""


# Which run holds each conversation's turn, across processes sharing the file (replicas, or two clients each
# spawning a stdio server on the default database): a run starts only when it can claim the row, and its
# end releases it. `owner` names the holding process (presence.py tells whether it is still alive); a run's
# owner lets a starting process interrupt the runs of a dead one while others still use the file.
M007_TURNS = """
CREATE TABLE turns (
    conversation_id TEXT PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
    run_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN owner TEXT;  -- the process that stored the run (null before m007)
"""

# cancel_run for a run another process owns: the request is stored on the run, and the owning process,
# which looks for requests addressed to it while it has runs, stops the run as if cancelled locally.
M008_CANCEL_REQUESTS = """
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_cancel_requested ON runs(owner) WHERE cancel_requested = 1;
"""

# The conversation's context (packed rowids) as it was when the run first compacted it, kept only while the
# run is in flight: a fork taken meanwhile inherits that context, less the run's own rows, rather than the
# run's summary (without a compaction, the context less the run's rows is already as it was before it).
M009_CONTEXT_BEFORE = """
ALTER TABLE runs ADD COLUMN context_before BLOB;
"""

# What Letta clients keep on an agent (description, tags as a JSON list, model_settings as a JSON object), and
# the conversation Letta's agent-direct routes (`conversation_id=default`) address, made on first use.
M010_AGENT_LETTA_FIELDS = """
ALTER TABLE agents ADD COLUMN description TEXT;
ALTER TABLE agents ADD COLUMN tags TEXT;
ALTER TABLE agents ADD COLUMN model_settings TEXT;
ALTER TABLE agents ADD COLUMN default_conversation_id TEXT;
"""

# Every agent belongs to the principal that made it (`local` for all earlier data), and with it everything of
# the agent; each principal has its own default agent, so "one default" becomes one per principal.
M011_AGENT_PRINCIPAL = """
ALTER TABLE agents ADD COLUMN principal TEXT NOT NULL DEFAULT 'local';
DROP INDEX agents_one_default;
CREATE UNIQUE INDEX agents_one_default ON agents(principal) WHERE is_default = 1;
CREATE INDEX agents_principal_created ON agents(principal, created_at, id);
"""

# Named tokens: only a SHA-256 of each token is kept. A name is unique among active tokens; a revoked
# one stays listed (revoked_at) and its name may be given to a new token.
M012_TOKENS = """
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,         -- hex SHA-256 of the token
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
CREATE UNIQUE INDEX tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;
"""

# Fair use per principal: each run records who sent it, so a run starts only while its principal has fewer
# than --max-runs-per-principal running (counted in the claim's transaction, across processes); and the
# times of each principal's latest requests (a JSON list of epoch seconds, at most --rate-limit of them) for
# the sliding-window rate limit that every process on the file shares.
M013_FAIR_USE = """
ALTER TABLE runs ADD COLUMN principal TEXT NOT NULL DEFAULT 'local';
CREATE INDEX runs_principal_unfinished ON runs(principal, status) WHERE status IN ('queued', 'running');
CREATE TABLE rate_limits (
    principal TEXT PRIMARY KEY,
    hits TEXT NOT NULL
);
"""

# Memory history: every value a block had, numbered per block (1, 2, … without gaps), with when and what changed
# it (`changed_by`: JSON, null for the value a block had when history began); pruned oldest first per block.
# `resource_changes` is the change feed MCP resource subscriptions read across processes sharing the file:
# triggers add a row when a block's value changes (kind b, key agent_id:label), a conversation's turn ends or
# its title changes (t, conversation id), or agents, blocks and conversations come or go (l). Writers are
# serialized, so `seq` grows in commit order and a reader never skips a row; only the newest 10000 are kept.
M014_BLOCK_VERSIONS = """
ALTER TABLE blocks ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE TABLE block_versions (
    block_id TEXT NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    changed_at TEXT NOT NULL,
    changed_by TEXT,
    PRIMARY KEY (block_id, version)
) WITHOUT ROWID;
INSERT INTO block_versions (block_id, version, value, changed_at, changed_by)
    SELECT id, 1, value, updated_at, NULL FROM blocks;

CREATE TABLE resource_changes (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL
);
CREATE TRIGGER resource_changes_bounded AFTER INSERT ON resource_changes BEGIN
    DELETE FROM resource_changes WHERE seq <= new.seq - 10000;
END;
CREATE TRIGGER blocks_changed AFTER UPDATE OF value ON blocks WHEN old.value IS NOT new.value BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('b', new.agent_id || ':' || new.label);
END;
CREATE TRIGGER blocks_added AFTER INSERT ON blocks BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('l', '');
END;
CREATE TRIGGER blocks_removed AFTER DELETE ON blocks BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('l', '');
END;
CREATE TRIGGER agents_added AFTER INSERT ON agents BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('l', '');
END;
CREATE TRIGGER agents_removed AFTER DELETE ON agents BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('l', '');
END;
CREATE TRIGGER conversations_added AFTER INSERT ON conversations BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('l', '');
END;
CREATE TRIGGER conversations_removed AFTER DELETE ON conversations BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('l', '');
END;
CREATE TRIGGER conversations_turn_ended AFTER UPDATE OF last_run_completion, summary ON conversations BEGIN
    INSERT INTO resource_changes (kind, key) VALUES ('t', new.id);
END;
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_initial", M001_INITIAL),
    ("m002_bulk_fts", M002_BULK_FTS),
    ("m003_message_embeddings", M003_MESSAGE_EMBEDDINGS),
    ("m004_system_rows", M004_SYSTEM_ROWS),
    ("m005_cheaper_inserts", M005_CHEAPER_INSERTS),
    ("m006_computed_search_text", M006_COMPUTED_SEARCH_TEXT),
    ("m007_turns", M007_TURNS),
    ("m008_cancel_requests", M008_CANCEL_REQUESTS),
    ("m009_context_before", M009_CONTEXT_BEFORE),
    ("m010_agent_letta_fields", M010_AGENT_LETTA_FIELDS),
    ("m011_agent_principal", M011_AGENT_PRINCIPAL),
    ("m012_tokens", M012_TOKENS),
    ("m013_fair_use", M013_FAIR_USE),
    ("m014_block_versions", M014_BLOCK_VERSIONS),
]


class SchemaTooNewError(RuntimeError):
    """The file was migrated by a newer release; opening it could corrupt its data."""


def schema_version(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0) if row else 0


def migrate(db: sqlite3.Connection) -> list[str]:
    """Apply pending migrations, each with its version row in one transaction; return their names.

    The version row is inserted first, so when two processes open a blank file at once the
    second one's insert fails on the primary key and it rolls back instead of re-running DDL."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    current = schema_version(db)
    if current > len(MIGRATIONS):
        raise SchemaTooNewError(
            f"the database has schema version {current} but this server knows only {len(MIGRATIONS)}; "
            "upgrade mcp-server-conversations or point --db at another file"
        )
    applied: list[str] = []
    for version, (name, sql) in enumerate(MIGRATIONS, start=1):
        if version <= current:
            continue
        script = (
            f"BEGIN IMMEDIATE;\nINSERT INTO schema_migrations (version, name, applied_at) "
            f"VALUES ({version}, '{name}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));\n{sql}\nCOMMIT;"
        )
        try:
            db.executescript(script)
        except sqlite3.IntegrityError:
            _rollback(db)
            if schema_version(db) < version:
                raise
            continue  # another process applied it first
        except BaseException:
            _rollback(db)
            raise
        applied.append(name)
    return applied


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")
