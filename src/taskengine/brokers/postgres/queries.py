"""Every SQL statement of the PostgreSQL broker, each with a header: inputs, output, invariant.

Statements are templates: `{s}` is the broker's schema and `{record}` the columns a TaskRecord
is built from (`Sql` fills both once per broker). Batches travel as arrays expanded by
`unnest`, so a batch of any size is one statement with a fixed text (prepared once per
connection). `t` is always the tasks table. Every time is a parameter, but with server_clock
(ADR 0006) the database clock is read by SERVER_TIME, by LOCK_ENQUEUE (the enqueue's now,
after the lock) and by RESERVE (its now when $7): readiness is judged by the database's clock
itself, not by a process's estimate of it.
"""

from __future__ import annotations

from taskengine.brokers.postgres.codec import RECORD_COLUMNS

# -- enqueue -------------------------------------------------------------------------------

# Inputs: $1 the enqueue lock key. Output: the database's clock once the lock is held (epoch
# seconds): the enqueue's now with server_clock.
# Invariant: enqueues of one schema run one at a time, so the depth they check is exact.
LOCK_ENQUEUE = """
SELECT extract(epoch FROM clock_timestamp())::float8 FROM pg_advisory_xact_lock($1)
"""

# Inputs: $1 ids, $2 idempotency keys. Output: one row: depth (the number of queued tasks),
# ids (those of $1 already stored, or NULL), keys and key_ids (aligned: stored tasks holding
# keys of $2, or NULL). Invariant: run under LOCK_ENQUEUE, in a snapshot taken after it.
ENQUEUE_LOOKUP = """
SELECT (SELECT sum(queued)::bigint FROM {s}.depth) AS depth, known.ids, keyed.keys, keyed.key_ids
FROM (
    SELECT array_agg(t.id) AS ids FROM {s}.tasks t WHERE t.id = ANY($1::text[])
) known
CROSS JOIN (
    SELECT array_agg(t.idempotency_key) AS keys, array_agg(t.id) AS key_ids
    FROM {s}.tasks t WHERE t.idempotency_key = ANY($2::text[])
) keyed
"""

# Inputs: $1..$13, $15..$21 aligned arrays (codec.task_arrays), $14 now. Output: none.
# Invariant: the caller checked every id and key is free (under LOCK_ENQUEUE); the state is
# queued, or blocked / cancelled (with its result) as model.deps.gate decided.
# The parents' depends_on travel as one text per task (a Postgres array of arrays must be
# rectangular): NULL or the ids joined by ','.
INSERT_TASKS = """
INSERT INTO {s}.tasks (id, type, payload, priority, queue, created_at, run_at, order_key,
                       timeout, max_attempts, attempt, idempotency_key, trace, state,
                       keep_result, depends_on, on_parent_failure, workflow, waiting, result,
                       result_attempt, finished_at, updated_at)
SELECT u.id, u.type, u.payload, u.priority, u.queue, u.created_at, u.run_at, u.order_key,
       u.timeout, u.max_attempts, u.attempt, u.ikey, u.trace, u.state, u.keep_result,
       string_to_array(u.deps, ','), u.opf, u.workflow, u.waiting, u.result,
       CASE WHEN u.result IS NULL THEN NULL ELSE u.attempt END,
       CASE WHEN u.state = 'cancelled' THEN $14::float8 END, $14::float8
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::text[], $6::float8[],
            $7::float8[], $8::float8[], $9::float8[], $10::int[], $11::int[], $12::text[],
            $13::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::int[],
            $20::bytea[], $21::float8[])
    AS u(id, type, payload, priority, queue, created_at, run_at, order_key, timeout,
         max_attempts, attempt, ikey, trace, state, deps, opf, workflow, waiting, result,
         keep_result)
"""

# -- dependencies (model.deps) -------------------------------------------------------------

# Inputs: $1 ids. Output: (id, state) of the stored ones. Invariant: marks them `waited` and
# holds their row locks to the end of the transaction, so a parent's settle cannot slip
# between reading its state here and storing the edge to it.
MARK_PARENTS = """
UPDATE {s}.tasks t SET waited = true WHERE t.id = ANY($1::text[]) RETURNING t.id, t.state
"""

# Inputs: $1 parent ids, $2 child ids (aligned). Output: none. Pending edges only.
INSERT_WAITS = """
INSERT INTO {s}.waits (parent, child) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT DO NOTHING
"""

# Inputs: $1 ids of tasks that ended. Output: (parent, child, on_parent_failure) of every
# pending edge from them, which are deleted. Invariant: run in the transaction that ended
# them, after it (a new snapshot: READ COMMITTED), so edges committed meanwhile are seen.
TAKE_WAITS = """
WITH gone AS (
    DELETE FROM {s}.waits w WHERE w.parent = ANY($1::text[]) RETURNING w.parent, w.child
)
SELECT g.parent, g.child, t.on_parent_failure
FROM gone g JOIN {s}.tasks t ON t.id = g.child
ORDER BY g.child, g.parent
"""

# Inputs: $1 ids, $2 how many parents each is released from (aligned), $3 now. Output: (id,
# state) of each changed. Invariant: only blocked tasks; at zero waiting a task is queued
# (the trigger counts it and NOTIFYs), due as submitted.
RELEASE = """
UPDATE {s}.tasks t
SET waiting = t.waiting - r.n, updated_at = $3,
    state = CASE WHEN t.waiting - r.n <= 0 THEN 'queued' ELSE t.state END
FROM unnest($1::text[], $2::int[]) AS r(id, n)
WHERE t.id = r.id AND t.state = 'blocked'
RETURNING t.id, t.state
"""

# Inputs: $1 ids, $2 aligned CANCELLED results naming the failed parent, $3 now. Output: the
# ids cancelled. Invariant: only blocked tasks (one cancelled meanwhile stays as it is).
CANCEL_BLOCKED = """
UPDATE {s}.tasks t
SET state = 'cancelled', waiting = 0, finished_at = $3, updated_at = $3, result = c.result,
    result_attempt = t.attempt
FROM unnest($1::text[], $2::bytea[]) AS c(id, result)
WHERE t.id = c.id AND t.state = 'blocked'
RETURNING t.id
"""

# Inputs: $1 ids. Output: none. Invariant: run after their edges were taken (TAKE_WAITS).
UNMARK = "UPDATE {s}.tasks t SET waited = false WHERE t.id = ANY($1::text[]) AND t.waited"

# Inputs: $1 ids. Output: (id, state, depends_on, on_parent_failure) of the known
# ones, locked for the transaction (replay reads them, then changes them).
REPLAY_LOOKUP = """
SELECT t.id, t.state, t.depends_on, t.on_parent_failure FROM {s}.tasks t
WHERE t.id = ANY($1::text[]) ORDER BY t.id FOR UPDATE
"""

# Inputs: $1 ids, $2 now, $3 head start per priority, $4 aligned states (queued or blocked),
# $5 aligned waiting counts. Output: none. Invariant: only dead or cancelled tasks come back,
# due now with attempt 0; history and the last result are kept.
REPLAY_GATED = """
UPDATE {s}.tasks t
SET state = r.state, waiting = r.waiting, attempt = 0, run_at = $2,
    order_key = greatest($2, t.created_at) - ($3::float8[])[t.priority + 1],
    updated_at = $2, finished_at = NULL, worker_id = NULL, cancel_requested = false
FROM unnest($1::text[], $4::text[], $5::int[]) AS r(id, state, waiting)
WHERE t.id = r.id AND t.state IN ('dead', 'cancelled')
"""

# -- reserve -------------------------------------------------------------------------------

# Inputs: $1 now, $2 lease_for, $3 worker id, $4 limit, $5 the smallest head start (a task due
# at now has an order key of at least now - $5, so the index range scan stops there), $6 queues
# (NULL: all), $7 whether the database's clock is now (server_clock: $1 is then ignored). A task
# is due once its run_at and created_at are both reached (model.priority.due_at).
# Output: {record}, lease_token, order_key of each claimed task, in no set order; the lease
# expires at now + $2, stamped started_at = updated_at = now.
# Invariant: FOR UPDATE SKIP LOCKED gives each due task to one caller only, across every
# connection; paused queues are skipped; each claim gets its own random token. Claims nothing
# while a limit is stored (ADR 0038): the broker then reserves with RESERVE_CANDIDATES.
RESERVE = """
WITH clock AS (
    SELECT CASE WHEN $7 THEN extract(epoch FROM clock_timestamp())::float8 ELSE $1::float8 END
        AS now
), due AS (
    SELECT t.id FROM {s}.tasks t, clock c
    WHERE t.state = 'queued' AND t.order_key <= c.now - $5 AND t.run_at <= c.now
      AND t.created_at <= c.now
      AND ($6::text[] IS NULL OR t.queue = ANY($6::text[]))
      AND NOT EXISTS (SELECT 1 FROM {s}.paused_queues p WHERE p.queue = t.queue)
      AND NOT EXISTS (SELECT 1 FROM {s}.limits)
    ORDER BY t.order_key, t.id
    LIMIT $4
    FOR UPDATE OF t SKIP LOCKED
)
UPDATE {s}.tasks t
SET state = 'running', attempt = t.attempt + 1, updated_at = c.now, started_at = c.now,
    worker_id = $3, lease_token = replace(gen_random_uuid()::text, '-', ''),
    lease_expires_at = c.now + $2::float8, cancel_requested = false
FROM due, clock c
WHERE t.id = due.id
RETURNING {record}, t.lease_token, t.order_key
"""

# -- unique locks (ADR 0038) -------------------------------------------------------------------

# Inputs: $1 lock keys. Output: (key, task_id, until, states, state) of the stored locks among
# them, with their holder's state (NULL: the holder is gone). Run under the enqueue lock.
SELECT_LOCKS = """
SELECT u.key, u.task_id, u.until, u.states, t.state
FROM {s}.unique_locks u LEFT JOIN {s}.tasks t ON t.id = u.task_id
WHERE u.key = ANY($1::text[])
"""

# Inputs: aligned $1 keys, $2 holder ids, $3 until (NULL: none), $4 states. Output: none.
# Invariant: run under the enqueue lock after SELECT_LOCKS found none of them holding.
PUT_LOCKS = """
INSERT INTO {s}.unique_locks (key, task_id, until, states)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[])
ON CONFLICT (key) DO UPDATE SET task_id = excluded.task_id, until = excluded.until,
    states = excluded.states
"""

# -- reserve under limits (ADR 0038), in one transaction ---------------------------------

# Inputs: none. Output: whether any limit is stored.
ANY_LIMITS = "SELECT EXISTS (SELECT 1 FROM {s}.limits)"

# Inputs: none. Output: every limit with its bucket, locked until the transaction ends, so
# reserves under limits take turns (each counts running tasks after the last one committed).
LOCK_LIMITS = """
SELECT scope, name, max_concurrency, rate, burst, tokens, stamp FROM {s}.limits
ORDER BY scope, name
FOR UPDATE
"""

# Inputs: $1 limited types, $2 limited queues. Output: (scope, name, n) running counts.
COUNT_RUNNING = """
SELECT 'type' AS scope, type AS name, count(*) AS n FROM {s}.tasks
WHERE state = 'running' AND type = ANY($1::text[]) GROUP BY type
UNION ALL
SELECT 'queue', queue, count(*) FROM {s}.tasks
WHERE state = 'running' AND queue = ANY($2::text[]) GROUP BY queue
"""

# Inputs: $1 now, $2 limit, $3 max order key, $4 queues (NULL: all), $5 types and $6 queues
# with no room, $7 ids already looked at. Output: (id, type, queue) of the next due tasks in
# (order_key, id) order, locked for this transaction (others skip them).
RESERVE_CANDIDATES = """
SELECT t.id, t.type, t.queue FROM {s}.tasks t
WHERE t.state = 'queued' AND t.order_key <= $3 AND t.run_at <= $1 AND t.created_at <= $1
  AND ($4::text[] IS NULL OR t.queue = ANY($4::text[]))
  AND NOT EXISTS (SELECT 1 FROM {s}.paused_queues p WHERE p.queue = t.queue)
  AND NOT (t.type = ANY($5::text[])) AND NOT (t.queue = ANY($6::text[]))
  AND NOT (t.id = ANY($7::text[]))
ORDER BY t.order_key, t.id
LIMIT $2
FOR UPDATE OF t SKIP LOCKED
"""

# Inputs: $1 ids (locked by RESERVE_CANDIDATES), $2 now, $3 lease expiry, $4 worker id.
# Output: as RESERVE.
CLAIM_IDS = """
UPDATE {s}.tasks t
SET state = 'running', attempt = t.attempt + 1, updated_at = $2, started_at = $2,
    worker_id = $4, lease_token = replace(gen_random_uuid()::text, '-', ''),
    lease_expires_at = $3, cancel_requested = false
WHERE t.id = ANY($1::text[]) AND t.state = 'queued'
RETURNING {record}, t.lease_token, t.order_key
"""

# Inputs: aligned $1 scopes, $2 names, $3 tokens; $4 stamp. Output: none.
SAVE_BUCKETS = """
UPDATE {s}.limits l SET tokens = b.tokens, stamp = $4
FROM unnest($1::text[], $2::text[], $3::float8[]) AS b(scope, name, tokens)
WHERE l.scope = b.scope AND l.name = b.name
"""

# Inputs: aligned $1 scopes, $2 names, $3 max_concurrency, $4 rate, $5 burst of the limits to
# store; $6 scopes, $7 names of those to remove; $8 the wake-up channel. Output: none.
# Invariant: a scope already limited keeps its bucket.
SET_LIMITS = """
WITH gone AS (
    DELETE FROM {s}.limits l USING unnest($6::text[], $7::text[]) AS d(scope, name)
    WHERE l.scope = d.scope AND l.name = d.name
), put AS (
    INSERT INTO {s}.limits (scope, name, max_concurrency, rate, burst)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::int[])
    ON CONFLICT (scope, name) DO UPDATE SET max_concurrency = excluded.max_concurrency,
        rate = excluded.rate, burst = excluded.burst
)
SELECT pg_notify($8, '')
"""

# Inputs: none. Output: the stored limits by (scope, name).
LIMITS = """
SELECT scope, name, max_concurrency, rate, burst, tokens, stamp FROM {s}.limits
ORDER BY scope, name
"""

# Inputs: $1 the wake-up channel. Output: none. Sent after a settle that freed a slot.
WAKE = "SELECT pg_notify($1, '')"

# -- extend, settle, requeue ---------------------------------------------------------------

# Inputs: $1 ids, $2 tokens (aligned, no pair twice), $3 new expiry.
# Output: (id, lease_token, cancel_requested) of each lease still held.
# Invariant: only the current token of a running task moves its expiry (fencing).
EXTEND = """
UPDATE {s}.tasks t SET lease_expires_at = $3
FROM unnest($1::text[], $2::text[]) AS l(id, token)
WHERE t.id = l.id AND t.lease_token = l.token AND t.state = 'running'
RETURNING t.id, t.lease_token, t.cancel_requested
"""

# Inputs: aligned arrays, no (id, token) pair twice: $1 ids, $2 tokens, $3 MessagePack Progress.
# Output: (id, token) of each report stored.
# Invariant: only the current holder (token matches, still running) writes its progress.
PROGRESS = """
UPDATE {s}.tasks t SET progress = p.progress
FROM unnest($1::text[], $2::text[], $3::bytea[]) AS p(id, token, progress)
WHERE t.id = p.id AND t.lease_token = p.token AND t.state = 'running'
RETURNING t.id, t.lease_token
"""

# Inputs: aligned arrays, one entry per outcome (no (id, token) pair twice): $1 ids, $2 tokens,
# $3 new states, $4 refund (the attempt is given back), $5 run_at (NULL: keep), $6 TaskResult
# (NULL: keep), $7 history line (NULL: none), $10 and $11 the TaskResult and line of the
# cancel that replaces the outcome if the task has a cancel request (NULL: it stands); $8 now;
# $9 head start per priority (index priority + 1); $12 whether tasks with dependents are
# taken (false on the fast path: those are settled again in a transaction that releases
# their dependents, model.deps). Output: (id, token, state) of each outcome applied.
# Invariant: fenced by the token, which it clears, so a stale or second settle is refused;
# result_attempt and the line's attempt are the row's attempt, not the caller's; a task with
# a cancel request is never queued again. A success of a task with keep_result 0 deletes the
# row instead (`gone`; a success is never replaced by a cancel): the two touch disjoint rows.
SETTLE = """
WITH o AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::float8[],
                         $6::bytea[], $7::bytea[], $10::bytea[], $11::bytea[])
        AS o(id, token, state, refund, run_at, result, line, cancel_result, cancel_line)
),
gone AS (
    DELETE FROM {s}.tasks t USING o
    WHERE t.id = o.id AND t.lease_token = o.token AND t.state = 'running'
      AND o.state = 'succeeded' AND t.keep_result = 0 AND (NOT t.waited OR $12)
    RETURNING t.id, o.token, 'succeeded'::text AS state
),
settled AS (
UPDATE {s}.tasks t
SET state = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN 'cancelled'
                 ELSE o.state END,
    attempt = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN t.attempt
                   ELSE t.attempt - o.refund::int END,
    run_at = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN t.run_at
                  ELSE coalesce(o.run_at, t.run_at) END,
    order_key = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN t.order_key
                     ELSE greatest(coalesce(o.run_at, t.run_at), t.created_at)
                          - ($9::float8[])[t.priority + 1] END,
    result = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN o.cancel_result
                  ELSE coalesce(o.result, t.result) END,
    result_attempt = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN t.attempt
                          WHEN o.result IS NULL THEN t.result_attempt ELSE t.attempt END,
    history_lines = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL
                             THEN array_append(t.history_lines, o.cancel_line)
                         WHEN o.line IS NULL THEN t.history_lines
                         ELSE array_append(t.history_lines, o.line) END,
    history_attempts = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL
                                THEN array_append(t.history_attempts, t.attempt)
                            WHEN o.line IS NULL THEN t.history_attempts
                            ELSE array_append(t.history_attempts, t.attempt) END,
    finished_at = CASE WHEN t.cancel_requested AND o.cancel_result IS NOT NULL THEN $8
                       WHEN o.state = 'queued' THEN t.finished_at ELSE $8 END,
    updated_at = $8, lease_token = NULL, lease_expires_at = NULL, cancel_requested = false
FROM o
WHERE t.id = o.id AND t.lease_token = o.token AND t.state = 'running' AND (NOT t.waited OR $12)
  AND NOT (o.state = 'succeeded' AND coalesce(t.keep_result, -1) = 0)
RETURNING t.id, o.token, t.state
)
SELECT id, token, state FROM settled
UNION ALL
SELECT id, token, state FROM gone
"""

# Inputs: $1 now, $2 limit. Output: (id, lease_token, attempt, worker_id, started_at,
# cancel_requested, max_attempts, waited) of running tasks whose lease ran out before $1, oldest
# expiry first.
# Invariant: run in a transaction; the rows stay locked until REQUEUE_APPLY commits.
REQUEUE_SELECT = """
SELECT t.id, t.lease_token, t.attempt, t.worker_id, t.started_at, t.cancel_requested,
       t.max_attempts, t.waited
FROM {s}.tasks t
WHERE t.state = 'running' AND t.lease_expires_at < $1
ORDER BY t.lease_expires_at, t.id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""

# Inputs: aligned $1 ids, $2 tokens, $3 history lines, $4 cancel (cancel was requested),
# $7 dead results (NULL unless the last attempt expired); $5 now; $6 head start per priority.
# Output: none.
# Invariant: the lost attempt stays counted and gets its line; a requeued task is due at once;
# a task whose last attempt expired is dead, never queued again.
REQUEUE_APPLY = """
UPDATE {s}.tasks t
SET state = CASE WHEN r.cancel THEN 'cancelled' WHEN r.result IS NOT NULL THEN 'dead'
                 ELSE 'queued' END,
    run_at = CASE WHEN r.cancel OR r.result IS NOT NULL THEN t.run_at ELSE $5 END,
    order_key = CASE WHEN r.cancel OR r.result IS NOT NULL THEN t.order_key
                     ELSE greatest($5, t.created_at) - ($6::float8[])[t.priority + 1] END,
    finished_at = CASE WHEN r.cancel OR r.result IS NOT NULL THEN $5 ELSE t.finished_at END,
    result = coalesce(r.result, t.result),
    result_attempt = CASE WHEN r.result IS NOT NULL THEN t.attempt ELSE t.result_attempt END,
    history_lines = array_append(t.history_lines, r.line),
    history_attempts = array_append(t.history_attempts, t.attempt),
    updated_at = $5, lease_token = NULL, lease_expires_at = NULL, cancel_requested = false
FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bool[], $7::bytea[])
    AS r(id, token, line, cancel, result)
WHERE t.id = r.id AND t.lease_token = r.token AND t.state = 'running'
"""

# -- admin ---------------------------------------------------------------------------------

# Inputs: $1 ids (no repeats), $2 aligned TaskResult (CANCELLED) per id, $3 now.
# Output: (id, changed) of each known id: changed is 'cancelled' (was queued or blocked),
# 'running' (cancel requested) or NULL (already finished).
# Invariant: one statement; a task that changes state meanwhile is judged by its new state
# (READ COMMITTED re-evaluates the row), so a task just reserved gets a cancel request.
CANCEL = """
WITH changed AS (
    UPDATE {s}.tasks t
    SET state = CASE WHEN t.state = 'running' THEN t.state ELSE 'cancelled' END,
        finished_at = CASE WHEN t.state = 'running' THEN t.finished_at ELSE $3 END,
        result = CASE WHEN t.state = 'running' THEN t.result ELSE c.result END,
        result_attempt = CASE WHEN t.state = 'running' THEN t.result_attempt ELSE t.attempt END,
        cancel_requested = (t.state = 'running'),
        waiting = 0,
        updated_at = $3
    FROM unnest($1::text[], $2::bytea[]) AS c(id, result)
    WHERE t.id = c.id AND t.state IN ('queued', 'blocked', 'running')
    RETURNING t.id, t.state
)
SELECT t.id, changed.state AS changed
FROM {s}.tasks t LEFT JOIN changed ON changed.id = t.id
WHERE t.id = ANY($1::text[])
"""

# Inputs: $1 terminal states, $2 cutoff, $3 limit. Output: how many tasks were deleted.
# Invariant: finished_at is set exactly in terminal states; earliest finished go first.
PURGE = """
WITH doomed AS (
    SELECT t.id FROM {s}.tasks t
    WHERE t.finished_at < $2 AND t.state = ANY($1::text[])
      AND (t.state <> 'succeeded' OR t.keep_result IS NULL)
    ORDER BY t.finished_at, t.id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
),
gone AS (DELETE FROM {s}.tasks t USING doomed WHERE t.id = doomed.id RETURNING 1)
SELECT count(*) FROM gone
"""

# Inputs: $1 ids. Output: the ids deleted. Invariant: only finished tasks; a queued or
# running one is never deleted.
DELETE = """
DELETE FROM {s}.tasks t WHERE t.id = ANY($1::text[])
  AND t.state IN ('succeeded', 'dead', 'cancelled')
RETURNING t.id
"""

# Inputs: $1 now, $2 limit. Output: how many were deleted.
# Invariant: only succeeded tasks whose own retention ran out (finished_at + keep_result < $1),
# the earliest expiry first (tasks_kept); concurrent purges skip each other's rows.
PURGE_KEPT = """
WITH doomed AS (
    SELECT t.id FROM {s}.tasks t
    WHERE t.state = 'succeeded' AND t.keep_result IS NOT NULL
      AND t.finished_at + t.keep_result < $1
    ORDER BY t.finished_at + t.keep_result, t.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
),
gone AS (DELETE FROM {s}.tasks t USING doomed WHERE t.id = doomed.id RETURNING 1)
SELECT count(*) FROM gone
"""

# Inputs: $1 queue names. Output: none. Idempotent.
PAUSE = "INSERT INTO {s}.paused_queues (queue) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
# Inputs: $1 queue names, $2 the schema's channel. Output: none. Wakes every waiter.
RESUME = """
WITH gone AS (DELETE FROM {s}.paused_queues WHERE queue = ANY($1::text[]))
SELECT pg_notify($2, '')
"""
# Inputs: none. Output: the paused queue names.
PAUSED = "SELECT queue FROM {s}.paused_queues"

# Inputs: aligned $1 ids (no repeats), $2 last_seen, $3 MessagePack WorkerInfo. Output: none.
RECORD_WORKERS = """
INSERT INTO {s}.workers (id, last_seen, info)
SELECT * FROM unnest($1::text[], $2::float8[], $3::bytea[])
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, info = excluded.info
"""
# Inputs: $1 worker ids. Output: none.
FORGET_WORKERS = "DELETE FROM {s}.workers WHERE id = ANY($1::text[])"
# Inputs: $1 instance, $2 now, $3 expires_at, $4 report bytes. Output: none. One statement:
# the reports expired before $2 go, this one is inserted or replaced.
RECORD_INSTANCE = """
WITH gone AS (DELETE FROM {s}.instances WHERE expires_at < $2 AND instance <> $1)
INSERT INTO {s}.instances (instance, expires_at, data) VALUES ($1, $3, $4)
ON CONFLICT (instance) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data
"""
# Inputs: $1 now. Output: (instance, expires_at, data) of reports not expired, by instance.
INSTANCES = """
SELECT instance, expires_at, data FROM {s}.instances WHERE expires_at >= $1 ORDER BY instance
"""
# Inputs: $1 seen_since. Output: MessagePack WorkerInfo of workers seen since then, by id.
WORKERS = "SELECT info FROM {s}.workers WHERE last_seen >= $1 ORDER BY id"

# Remote control (ADR 0036). Inputs: $1 instance, aligned $2 sent_at and $3 packed Control,
# $4 the oldest sent_at kept. Output: none. Invariant: commands past CONTROL_TTL go first.
SEND_CONTROL = """
WITH gone AS (DELETE FROM {s}.controls WHERE sent_at < $4)
INSERT INTO {s}.controls (instance, sent_at, control)
SELECT $1, sent_at, control FROM unnest($2::float8[], $3::bytea[]) AS c (sent_at, control)
"""
# Inputs: $1 instance. Output: (seq, control) of the commands taken. Invariant: one atomic
# DELETE: a command is returned to one caller only; an empty channel writes nothing.
TAKE_CONTROLS = "DELETE FROM {s}.controls WHERE instance = $1 RETURNING seq, control"

# Inputs: $1 name, $2 holder, $3 now, $4 expiry. Output: one row if $2 now holds $1.
# Invariant: one atomic upsert, so two holders never hold one name: the row is taken when
# absent, renewed by its holder, or taken over once expired (expires_at <= now).
LEADER = """
INSERT INTO {s}.leader_leases (name, holder, expires_at) VALUES ($1, $2, $4)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at <= $3
RETURNING holder
"""
# Inputs: $1 name, $2 holder. Output: none. Invariant: only the holder frees it.
RESIGN = "DELETE FROM {s}.leader_leases WHERE name = $1 AND holder = $2"

# -- reads ---------------------------------------------------------------------------------

# Inputs: none. Output: the database server's wall clock now, in seconds since the epoch.
# Invariant: the only statement that reads the database clock (brokers.server_clock).
SERVER_TIME = "SELECT extract(epoch FROM clock_timestamp())::float8"

# Inputs: $1 ids. Output: {record} of the known ones.
GET = "SELECT {record} FROM {s}.tasks t WHERE t.id = ANY($1::text[])"

# Inputs: none. Output: (queue, state, priority, count, oldest created_at of queued tasks, else
# NULL) per group, in that order. A full scan: for dashboards, not the hot path.
COUNTS = """
SELECT t.queue, t.state, t.priority, count(*) AS count,
  CASE t.state WHEN 'queued' THEN min(t.created_at) END AS oldest
FROM {s}.tasks t
GROUP BY t.queue, t.state, t.priority
ORDER BY t.queue, t.state, t.priority
"""

# Inputs: none. Output: the template `listing.list_query` completes with its conditions.
LIST = "SELECT {record} FROM {s}.tasks t {where} ORDER BY t.id DESC LIMIT {limit}"

# Inputs: none. Output: none. Invariant: everything of the schema goes, tables and triggers.
DROP_SCHEMA = "DROP SCHEMA IF EXISTS {s} CASCADE"


class Sql:
    """The statements of one schema, filled in once each and kept."""

    def __init__(self, quoted_schema: str) -> None:
        self._schema = quoted_schema
        self._filled: dict[str, str] = {}

    def __call__(self, template: str) -> str:
        """The statement `template` for this schema."""
        filled = self._filled.get(template)
        if filled is None:
            filled = template.format(s=self._schema, record=RECORD_COLUMNS)
            self._filled[template] = filled
        return filled
