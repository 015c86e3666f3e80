"""The SQLite store's schema and connection settings: tables, indexes, triggers, version."""

from __future__ import annotations

import sqlite3

from taskengine.errors import ConfigurationError

# 5: the instances table (ADR 0033, created IF NOT EXISTS) and no per-row depth triggers;
# 6: dependencies (ADR 0037).
SCHEMA_VERSION = 6
SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

# Inputs: none. Output: the tables below (idempotent: every statement is IF NOT EXISTS).
# Invariants:
# - tasks.order_key = model.priority.order_key(priority, due_at(run_at, created_at)),
#   written by the broker whenever run_at changes; tasks_ready serves `reserve` without
#   touching the table for most rows it skips (covering: order_key, id, run_at, queue;
#   created_at, which a task also waits for, is read from the table).
# - lease_token is set exactly while state = 'running'; settle and extend match on it.
# - depth.queued = count(*) of tasks in state 'queued', kept in the same transaction as the
#   change, so every process sees it exact in O(1): by each write of writes.py that queues or
#   unqueues tasks (one ADD_DEPTH per batch; per-row triggers cost a fifth of the writer's
#   time, schema 5), and by the delete trigger below for any queued task deleted.
# - finished_at is set exactly while the state is terminal (succeeded, dead, cancelled).
# - no (state, id) index: it cost a third of enqueue throughput. list_tasks walks the primary
#   key newest first; the dead-letter listing alone has its own small index (tasks_dead).
# - progress (msgpack model.Progress or NULL) changes only under the current lease token.
# - depends_on (JSON array or NULL), on_parent_failure (NULL: cancel) and workflow are as
#   submitted; waiting = the number of rows in waits whose child is this task, while blocked
#   (model.deps). waits holds only pending edges: a parent's rows go when it settles.
# - attempts is insert-only (deleted with its task by purge); seq gives the history order.
# - controls: remote-control commands per instance (ADR 0036), taken oldest first (seq) and
#   deleted as they are taken; a command older than CONTROL_TTL is deleted by the next send.
# - keep_result (seconds, NULL = the global retention) is the task's own retention once it
#   succeeded: 0 deletes it in the settle, > 0 leaves it to purge_kept (tasks_kept, ADR 0035).
# - limits holds each limited scope (type or queue, ADR 0038) with its token bucket (tokens at
#   stamp, NULL until first used); created by IF NOT EXISTS, so older stores gain it as is.
# - unique_locks: a submission's unique lock (ADR 0038): holder id, until (unique_for) or the
#   holder states it holds in (unique_while); deleted with its holder (unique_locks_gone).
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL,
    queue TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_at REAL NOT NULL,
    order_key REAL NOT NULL,
    timeout REAL NOT NULL,
    max_attempts INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    lease_token TEXT,
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result BLOB,
    trace TEXT,
    keep_result REAL,
    progress BLOB,
    depends_on TEXT,
    on_parent_failure TEXT,
    workflow TEXT,
    waiting INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_idempotency_key
    ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_ready
    ON tasks (order_key, id, run_at, queue) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS tasks_leases
    ON tasks (lease_expires_at, id) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS tasks_finished
    ON tasks (finished_at, id) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_dead ON tasks (id) WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS tasks_kept ON tasks (finished_at + keep_result, id)
    WHERE state = 'succeeded' AND keep_result IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_workflow ON tasks (workflow, id) WHERE workflow IS NOT NULL;

CREATE TABLE IF NOT EXISTS waits (
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts (task_id, seq);

CREATE TABLE IF NOT EXISTS depth (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    queued INTEGER NOT NULL
);
INSERT OR IGNORE INTO depth (id, queued)
    SELECT 0, count(*) FROM tasks WHERE state = 'queued';

CREATE TRIGGER IF NOT EXISTS tasks_depth_delete AFTER DELETE ON tasks
    WHEN old.state = 'queued'
BEGIN
    UPDATE depth SET queued = queued - 1 WHERE id = 0;
END;

CREATE TABLE IF NOT EXISTS paused_queues (queue TEXT PRIMARY KEY) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    last_seen REAL NOT NULL,
    info BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS controls (
    seq INTEGER PRIMARY KEY,
    instance TEXT NOT NULL,
    sent_at REAL NOT NULL,
    control BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS controls_instance ON controls (instance, seq);

CREATE TABLE IF NOT EXISTS limits (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    max_concurrency INTEGER,
    rate REAL,
    burst INTEGER,
    tokens REAL,
    stamp REAL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unique_locks (
    key TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    until REAL,
    states TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS unique_locks_task ON unique_locks (task_id);
CREATE TRIGGER IF NOT EXISTS unique_locks_gone AFTER DELETE ON tasks
BEGIN
    DELETE FROM unique_locks WHERE task_id = old.id;
END;
CREATE TABLE IF NOT EXISTS instances (
    instance TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    data BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS leaders (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Inputs: none. Output: none. Upgrades a store of schema version 1 (made before `trace`) to 2;
# the column is nullable, so old rows read as tasks without a trace context.
UPGRADE_TO_2 = "ALTER TABLE tasks ADD COLUMN trace TEXT"
# Upgrades version 2 to 3 (ADR 0035): NULL keep_result is the global retention, as before.
UPGRADE_TO_3 = "ALTER TABLE tasks ADD COLUMN keep_result REAL"
# Inputs: none. Output: none. Upgrades a store made before progress reports (ADR 0034): run
# when the tasks table lacks the column, whatever the version; nullable, so old rows read as
# without progress.
ADD_PROGRESS = "ALTER TABLE tasks ADD COLUMN progress BLOB"
# Upgrades versions 1-4 to 5: the writes keep depth.queued per batch instead of these per-row
# triggers (the counter itself is unchanged and stays exact).
UPGRADE_TO_5 = (
    "DROP TRIGGER IF EXISTS tasks_depth_insert",
    "DROP TRIGGER IF EXISTS tasks_depth_leave",
    "DROP TRIGGER IF EXISTS tasks_depth_enter",
)

# Inputs: none. Output: none. Upgrades a store of schema version 1-5 to 6 (dependencies, ADR
# 0037): old rows have no parents, are in no workflow and wait for nothing.
UPGRADE_TO_6 = (
    "ALTER TABLE tasks ADD COLUMN depends_on TEXT",
    "ALTER TABLE tasks ADD COLUMN on_parent_failure TEXT",
    "ALTER TABLE tasks ADD COLUMN workflow TEXT",
    "ALTER TABLE tasks ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0",
)


def check_synchronous(value: str) -> str:
    """Return the upper-cased `synchronous` mode, or raise ConfigurationError."""
    mode = value.upper() if isinstance(value, str) else ""
    if mode not in SYNCHRONOUS_MODES:
        raise ConfigurationError(
            f"synchronous must be one of {', '.join(sorted(SYNCHRONOUS_MODES))}: {value!r}"
        )
    return mode


def connect(path: str, *, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """Open a connection in WAL mode with manual transactions and the given settings."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ConfigurationError(f"SQLite store {path!r} cannot use WAL (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {check_synchronous(synchronous)}")
        # SAVEPOINT sub-journals go to temp storage: a file there doubled the cost of a group.
        conn.execute("PRAGMA temp_store = MEMORY")
        # No memory-mapped I/O of the main file, whatever the build's default: through a map,
        # a failing or vanished disk is SIGBUS instead of an error (the -shm map stays: WAL).
        conn.execute("PRAGMA mmap_size = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """Create what is missing and record the schema version (run inside a write transaction)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the SQLite store has schema version {version}; this build knows {SCHEMA_VERSION}"
        )
    if version == 1:  # CREATE TABLE IF NOT EXISTS leaves an existing table as it was
        conn.execute(UPGRADE_TO_2)
    if 1 <= version <= 2:
        conn.execute(UPGRADE_TO_3)
    if version >= 1 and not _has_column(conn, "tasks", "progress"):  # version 4
        conn.execute(ADD_PROGRESS)
    if 1 <= version <= 4:
        for statement in UPGRADE_TO_5:
            conn.execute(statement)
    if 1 <= version <= 5:
        for statement in UPGRADE_TO_6:  # a column per statement; a store may have some already
            if not _has_column(conn, "tasks", statement.split()[5]):
                conn.execute(statement)
    for statement in _statements(SCHEMA):
        conn.execute(statement)
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    """Whether `table` has `column` (PRAGMA table_info)."""
    return any(row[1] == column for row in conn.execute(f"PRAGMA table_info({table})"))


def _statements(script: str) -> list[str]:
    """Split a script into complete statements (triggers hold inner semicolons)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
