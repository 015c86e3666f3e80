"""The PostgreSQL store's schema: numbered migrations, applied once each under an advisory lock.

Every table lives in the broker's own schema (the URL's `schema` parameter), so engines (and
tests) sharing one database never see each other. `migrate` is safe to run from any number of
processes at once: they queue on a transaction-level advisory lock keyed by the schema name,
and each migration runs once, in the same transaction as its row in `schema_version`.
"""

from __future__ import annotations

import hashlib
from typing import Any

from taskengine.errors import ConfigurationError

# Inputs: none. Output: the first version of every table.
# Invariants:
# - tasks.order_key = model.priority.order_key(priority, due_at(run_at, created_at)):
#   written whenever run_at changes; tasks_ready serves `reserve` in (order_key, id) order
#   (ADR 0002, ADR 0006).
# - lease_token is set exactly while state = 'running'; extend and settle match on it.
# - result holds the last TaskResult (MessagePack) and result_attempt its attempt number;
#   history_lines[i] is one AttemptRecord (MessagePack) whose attempt is history_attempts[i].
#   Numbers are kept apart because only the row knows them when a settle is applied.
# - finished_at is set exactly while the state is terminal (succeeded, dead, cancelled).
# - sum(depth.queued) = count(*) of queued tasks: the statement trigger adds each statement's
#   change to the slot of its connection (backend pid mod 64), in the same transaction, so
#   concurrent statements do not queue on one counter row; updates stay on the row's page
#   (HOT), so the table does not grow.
# - the same trigger NOTIFYs 'taskengine.<schema>' when a statement leaves tasks queued.
# - text that is sorted or compared (ids, queues, states) uses COLLATE "C": the code-point
#   order every other broker uses, whatever the database's locale.
V1 = """
CREATE TABLE {s}.tasks (
    id text COLLATE "C" PRIMARY KEY,
    type text COLLATE "C" NOT NULL,
    payload bytea NOT NULL,
    priority smallint NOT NULL,
    queue text COLLATE "C" NOT NULL,
    created_at double precision NOT NULL,
    run_at double precision NOT NULL,
    order_key double precision NOT NULL,
    timeout double precision NOT NULL,
    max_attempts integer NOT NULL,
    attempt integer NOT NULL,
    idempotency_key text COLLATE "C",
    state text COLLATE "C" NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    updated_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    worker_id text,
    lease_token text,
    lease_expires_at double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    result bytea,
    result_attempt integer,
    history_lines bytea[] NOT NULL DEFAULT ARRAY[]::bytea[],
    history_attempts integer[] NOT NULL DEFAULT ARRAY[]::integer[]
);
CREATE UNIQUE INDEX tasks_idempotency_key
    ON {s}.tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_ready ON {s}.tasks (order_key, id) WHERE state = 'queued';
CREATE INDEX tasks_leases ON {s}.tasks (lease_expires_at, id) WHERE state = 'running';
CREATE INDEX tasks_finished ON {s}.tasks (finished_at, id) WHERE finished_at IS NOT NULL;
CREATE INDEX tasks_dead ON {s}.tasks (id) WHERE state = 'dead';

CREATE TABLE {s}.depth (slot integer PRIMARY KEY, queued bigint NOT NULL);
INSERT INTO {s}.depth (slot, queued) SELECT slot, 0 FROM generate_series(0, 63) AS slot;

CREATE FUNCTION {s}.tasks_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    queued_after bigint := 0;
    queued_before bigint := 0;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        SELECT count(*) INTO queued_after FROM new_rows WHERE state = 'queued';
    END IF;
    IF TG_OP <> 'INSERT' THEN
        SELECT count(*) INTO queued_before FROM old_rows WHERE state = 'queued';
    END IF;
    IF queued_after <> queued_before THEN
        UPDATE {s}.depth SET queued = queued + (queued_after - queued_before)
        WHERE slot = pg_backend_pid() % 64;
    END IF;
    IF queued_after > 0 THEN
        PERFORM pg_notify('taskengine.' || TG_TABLE_SCHEMA, '');
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER tasks_inserted AFTER INSERT ON {s}.tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.tasks_changed();
CREATE TRIGGER tasks_updated AFTER UPDATE ON {s}.tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.tasks_changed();
CREATE TRIGGER tasks_deleted AFTER DELETE ON {s}.tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.tasks_changed();

CREATE TABLE {s}.paused_queues (queue text COLLATE "C" PRIMARY KEY);

CREATE TABLE {s}.workers (
    id text COLLATE "C" PRIMARY KEY,
    last_seen double precision NOT NULL,
    info bytea NOT NULL
);

CREATE TABLE {s}.leader_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at double precision NOT NULL
);
"""

# Version 2: the W3C traceparent a task was submitted under (taskengine.tracing); NULL: none.
V2 = """
ALTER TABLE {s}.tasks ADD COLUMN trace text;
"""

# Version 3 (ADR 0035): a task's own result retention in seconds (NULL: the global one; 0: a
# success is deleted by its settle); tasks_kept serves purge_kept, earliest expiry first.
V3 = """
ALTER TABLE {s}.tasks ADD COLUMN keep_result double precision;
CREATE INDEX tasks_kept ON {s}.tasks ((finished_at + keep_result), id)
    WHERE state = 'succeeded' AND keep_result IS NOT NULL;
"""

# Version 4: the last progress a run reported (MessagePack model.Progress; NULL: none), written
# only under the current lease token (ADR 0034). IF NOT EXISTS: it may be renumbered when
# branches that each added a migration merge, and still run once per schema.
V4 = """
ALTER TABLE {s}.tasks ADD COLUMN IF NOT EXISTS progress bytea;
"""

# Version 5: each engine process's telemetry report, kept until it expires (ADR 0033).
# IF NOT EXISTS: it may be renumbered when branches that each added a migration merge.
V5 = """
CREATE TABLE IF NOT EXISTS {s}.instances (
    instance text COLLATE "C" PRIMARY KEY,
    expires_at double precision NOT NULL,
    data bytea NOT NULL
);
"""

# Version 6 (ADR 0036): remote-control commands per instance, taken oldest first (seq) and
# deleted as they are taken; a command older than CONTROL_TTL is deleted by the next send.
# IF NOT EXISTS: it may be renumbered when branches that each added a migration merge.
V6 = """
CREATE TABLE IF NOT EXISTS {s}.controls (
    seq bigserial PRIMARY KEY,
    instance text COLLATE "C" NOT NULL,
    sent_at double precision NOT NULL,
    control bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS controls_instance ON {s}.controls (instance, seq);
"""

# Version 7 (ADR 0038): each limited scope (a task type or a queue) with its token bucket
# (tokens at stamp; NULL until a reserve used it). reserve locks these rows FOR UPDATE, so
# reserves under limits take their turns and count running tasks after the previous one
# committed. unique_locks: a submission's unique lock (holder, until or the holder states it
# holds in), deleted with its holder (ON DELETE CASCADE). IF NOT EXISTS: it may be renumbered
# when branches that each added a migration merge.
V7 = """
CREATE TABLE IF NOT EXISTS {s}.limits (
    scope text NOT NULL,
    name text NOT NULL,
    max_concurrency integer,
    rate double precision,
    burst integer,
    tokens double precision,
    stamp double precision,
    PRIMARY KEY (scope, name)
);
CREATE TABLE IF NOT EXISTS {s}.unique_locks (
    key text PRIMARY KEY,
    task_id text NOT NULL REFERENCES {s}.tasks (id) ON DELETE CASCADE,
    until double precision,
    states text NOT NULL
);
CREATE INDEX IF NOT EXISTS unique_locks_task ON {s}.unique_locks (task_id);
"""

# Version 8: dependencies and workflows (model.deps, ADR 0037).
# - state may be 'blocked': waiting = the rows in waits whose child is this task.
# - waits holds only pending edges (parent -> blocked child); a parent's rows go in the
#   transaction that ends it.
# - waited is true on a task that may have rows in waits as a parent: settle takes such a task
#   only in a transaction that also releases its dependents (the fast path skips it), and an
#   enqueue or replay that adds an edge sets it under the parent's row lock, so the two
#   never miss each other.
# IF [NOT] EXISTS: a schema migrated by a build that numbered it differently reruns it.
V8 = """
ALTER TABLE {s}.tasks DROP CONSTRAINT IF EXISTS tasks_state_check;
ALTER TABLE {s}.tasks ADD CONSTRAINT tasks_state_check
    CHECK (state IN ('blocked', 'queued', 'running', 'succeeded', 'dead', 'cancelled'));
ALTER TABLE {s}.tasks
    ADD COLUMN IF NOT EXISTS depends_on text[],
    ADD COLUMN IF NOT EXISTS on_parent_failure text,
    ADD COLUMN IF NOT EXISTS workflow text COLLATE "C",
    ADD COLUMN IF NOT EXISTS waiting integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS waited boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS tasks_workflow ON {s}.tasks (workflow, id)
    WHERE workflow IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.waits (
    parent text COLLATE "C" NOT NULL,
    child text COLLATE "C" NOT NULL,
    PRIMARY KEY (parent, child)
);
"""

# (version, script): append only; a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, V1),
    (2, V2),
    (3, V3),
    (4, V4),
    (5, V5),
    (6, V6),
    (7, V7),
    (8, V8),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

# Inputs: $1 the advisory lock key. Output: none. Invariant: held until the transaction ends.
LOCK = "SELECT pg_advisory_xact_lock($1)"
PREPARE = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer PRIMARY KEY);
"""
# Inputs: none. Output: the highest applied version, or NULL on a new schema.
CURRENT_VERSION = "SELECT max(version) FROM {s}.schema_version"
# Inputs: $1 version. Output: none.
RECORD_VERSION = "INSERT INTO {s}.schema_version (version) VALUES ($1)"
# Inputs: none. Output: whether the version table exists (a schema made by `migrate`).
VERSION_TABLE = "SELECT to_regclass('{s}.schema_version') IS NOT NULL"
# Inputs: none. Output: whether commits reach the disk before they are acknowledged.
DURABILITY = """
SELECT current_setting('fsync') = 'on' AND current_setting('synchronous_commit') <> 'off'
"""


def lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory lock key for one purpose on one schema."""
    digest = hashlib.blake2b(f"taskengine:{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def migrate(conn: Any, quoted_schema: str, schema: str) -> int:
    """Create the schema and apply the missing migrations in one transaction; return how many.

    Raises ConfigurationError if the schema was made by a newer build.
    """
    async with conn.transaction():
        await conn.execute(LOCK, lock_key("migrate", schema))
        await conn.execute(PREPARE.format(s=quoted_schema))
        current = await conn.fetchval(CURRENT_VERSION.format(s=quoted_schema)) or 0
        if current > SCHEMA_VERSION:
            raise ConfigurationError(
                f"schema {schema!r} has version {current}; this build knows {SCHEMA_VERSION}"
            )
        applied = 0
        for version, script in MIGRATIONS:
            if version > current:
                await conn.execute(script.format(s=quoted_schema))
                await conn.execute(RECORD_VERSION.format(s=quoted_schema), version)
                applied += 1
        return applied


async def check_version(conn: Any, quoted_schema: str, schema: str) -> None:
    """Refuse a schema that is missing or older than this build (start with `migrate=false`)."""
    current = 0
    if await conn.fetchval(VERSION_TABLE.format(s=quoted_schema)):
        current = await conn.fetchval(CURRENT_VERSION.format(s=quoted_schema)) or 0
    if current != SCHEMA_VERSION:
        raise ConfigurationError(
            f"schema {schema!r} has version {current}; this build needs {SCHEMA_VERSION}: "
            "run `taskengine migrate` (the broker URL says migrate=false)"
        )
