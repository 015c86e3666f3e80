"""Every SQL statement of the SQLite broker, each with a header: inputs, output, invariant.

Lists travel as one JSON array parameter expanded by `json_each`, so a batch of any size is one
statement with a fixed text (cached by sqlite3) and no variable-count limit.
"""

from __future__ import annotations

from taskengine.brokers.sqlite.codec import RECORD_COLUMNS

# -- enqueue -------------------------------------------------------------------------------

# Inputs: ?1 JSON array of ids. Output: the ids among them already stored.
SELECT_KNOWN_IDS = "SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?1))"

# Inputs: ?1 JSON array of idempotency keys. Output: (key, id) of tasks holding them.
SELECT_KNOWN_KEYS = """
SELECT idempotency_key, id FROM tasks
WHERE idempotency_key IN (SELECT value FROM json_each(?1))
"""

# Inputs: ?1 JSON array of unique lock keys. Output: (key, holder id, until, states, holder's
# state or NULL if it is gone) of the stored locks among them (ADR 0038).
SELECT_LOCKS = """
SELECT u.key, u.task_id, u.until, u.states, t.state
FROM unique_locks u LEFT JOIN tasks t ON t.id = u.task_id
WHERE u.key IN (SELECT value FROM json_each(?1))
"""

# Inputs: ?1 key, ?2 holder id, ?3 until (NULL: none), ?4 states. Output: none.
# Invariant: the caller found no stored lock of this key that holds.
PUT_LOCK = (
    "INSERT OR REPLACE INTO unique_locks (key, task_id, until, states) VALUES (?1, ?2, ?3, ?4)"
)

# Inputs: none. Output: the number of queued tasks.
# Invariant: kept equal to count(*) WHERE state = 'queued' by the tasks_depth_* triggers.
SELECT_DEPTH = "SELECT queued FROM depth WHERE id = 0"

# Inputs: ?1 the change in the number of queued tasks (negative: fewer). Output: none.
# Invariant: run in the transaction that queued or unqueued those tasks (schema.py).
ADD_DEPTH = "UPDATE depth SET queued = queued + ?1 WHERE id = 0"

# Inputs: one task (codec.task_params). Output: none. Invariant: the caller checked the id and
# idempotency key are free; order_key = model.priority.order_key(priority, due_at(...)); the
# state is queued, or blocked / cancelled as model.deps.gate decided from the parents.
INSERT_TASK = """
INSERT INTO tasks (id, type, payload, priority, queue, created_at, run_at, order_key, timeout,
                   max_attempts, attempt, idempotency_key, updated_at, trace, state,
                   depends_on, on_parent_failure, workflow, waiting, result, finished_at,
                   keep_result)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        ?19, ?20, ?21, ?22)
"""

# -- dependencies (model.deps) -------------------------------------------------------------

# Inputs: ?1 parent id, ?2 child id. Output: none. Invariant: only pending edges are stored.
INSERT_WAIT = "INSERT OR IGNORE INTO waits (parent, child) VALUES (?1, ?2)"

# Inputs: ?1 JSON array of task ids. Output: those that have pending dependents.
SELECT_WAITED = """
SELECT DISTINCT parent FROM waits WHERE parent IN (SELECT value FROM json_each(?1))
"""

# Inputs: ?1 parent id. Output: (id, state, waiting, on_parent_failure, attempt) of the tasks
# waiting on it, by id; the edges are deleted by DELETE_WAITS in the same transaction.
SELECT_WAITING = """
SELECT t.id, t.state, t.waiting, t.on_parent_failure, t.attempt
FROM waits w JOIN tasks t ON t.id = w.child
WHERE w.parent = ?1
ORDER BY t.id
"""
DELETE_WAITS = "DELETE FROM waits WHERE parent = ?1"

# Inputs: ?1 now, ?2 id, ?3 how many of its parents settled. Output: none. Invariant: a
# blocked task ?3 parents fewer waits on; at zero it is queued, due as it was submitted (the
# caller adds it to depth with ADD_DEPTH).
RELEASE = """
UPDATE tasks
SET waiting = waiting - ?3, updated_at = ?1,
    state = CASE WHEN waiting <= ?3 THEN 'queued' ELSE state END
WHERE id = ?2 AND state = 'blocked'
"""

# Inputs: ?1 now, ?2 msgpack TaskResult (CANCELLED, naming the parent), ?3 id. Output: none.
# Invariant: a blocked task whose parent ended dead or cancelled.
CANCEL_BLOCKED = """
UPDATE tasks SET state = 'cancelled', waiting = 0, updated_at = ?1, finished_at = ?1,
    result = ?2
WHERE id = ?3 AND state = 'blocked'
"""

# Inputs: ?1 JSON array of ids. Output: (id, state, depends_on, on_parent_failure).
SELECT_PARENTS = """
SELECT id, state, depends_on, on_parent_failure FROM tasks
WHERE id IN (SELECT value FROM json_each(?1))
"""

# Inputs: ?1 now, ?2 waiting, ?3 id, ?4 HEAD_START[priority]. Output: none. Invariant: a dead
# or cancelled task replayed while a parent is unfinished waits again (its edges are inserted
# alongside), keyed as REPLAY keys a queued one.
REPLAY_BLOCKED = """
UPDATE tasks
SET state = 'blocked', waiting = ?2, attempt = 0, run_at = ?1, updated_at = ?1,
    order_key = max(?1, created_at) - ?4,
    finished_at = NULL, worker_id = NULL, cancel_requested = 0
WHERE id = ?3 AND state IN ('dead', 'cancelled')
"""

# -- reserve -------------------------------------------------------------------------------

# Inputs: :now, :expires_at, :worker, :limit, :max_key (the highest order key a task due at
# :now can have, so the index range scan stops there), :queues (JSON array, or NULL for all).
# A task is due once run_at and created_at are both reached (model.priority.due_at).
# Output: RECORD_COLUMNS + lease_token + order_key of each claimed task, in no set order.
# Invariant: one statement under the write lock claims each task once, lowest
# (order_key, id) first, skipping paused queues; each row gets its own random token.
RESERVE = f"""
UPDATE tasks
SET state = 'running', attempt = attempt + 1, updated_at = :now, started_at = :now,
    worker_id = :worker, lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :expires_at, cancel_requested = 0
WHERE rowid IN (
    SELECT rowid FROM tasks INDEXED BY tasks_ready
    WHERE state = 'queued' AND order_key <= :max_key AND run_at <= :now
      AND queue NOT IN (SELECT queue FROM paused_queues)
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
      AND created_at <= :now
    ORDER BY order_key, id
    LIMIT :limit
)
RETURNING {RECORD_COLUMNS}, lease_token, order_key
"""

# -- reserve under limits (ADR 0038) -------------------------------------------------------

# Inputs: none. Output: every stored limit with its bucket: (scope, name, max_concurrency,
# rate, burst, tokens, stamp); tokens and stamp are NULL until a reserve used the bucket.
SELECT_LIMITS = """
SELECT scope, name, max_concurrency, rate, burst, tokens, stamp FROM limits
ORDER BY scope, name
"""

# Inputs: :types, :queues (JSON arrays of limited names). Output: (scope, name, running count).
# Served by the partial index tasks_leases (state = 'running').
COUNT_RUNNING = """
SELECT 'type', type, count(*) FROM tasks
WHERE state = 'running' AND type IN (SELECT value FROM json_each(:types)) GROUP BY type
UNION ALL
SELECT 'queue', queue, count(*) FROM tasks
WHERE state = 'running' AND queue IN (SELECT value FROM json_each(:queues)) GROUP BY queue
"""

# Inputs: as RESERVE, plus :skip_types, :skip_queues (scopes with no room) and :seen (rowids
# already looked at in this call), JSON arrays. Output: (rowid, type, queue) of the next due
# tasks in (order_key, id) order. Invariant: run under the write lock with CLAIM_ROWIDS.
RESERVE_CANDIDATES = """
SELECT rowid, type, queue FROM tasks INDEXED BY tasks_ready
WHERE state = 'queued' AND order_key <= :max_key AND run_at <= :now
  AND queue NOT IN (SELECT queue FROM paused_queues)
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND created_at <= :now
  AND type NOT IN (SELECT value FROM json_each(:skip_types))
  AND queue NOT IN (SELECT value FROM json_each(:skip_queues))
  AND rowid NOT IN (SELECT value FROM json_each(:seen))
ORDER BY order_key, id
LIMIT :limit
"""

# Inputs: :rowids (JSON array), :now, :expires_at, :worker. Output: as RESERVE.
# Invariant: the rows were selected as queued and due in this transaction.
CLAIM_ROWIDS = f"""
UPDATE tasks
SET state = 'running', attempt = attempt + 1, updated_at = :now, started_at = :now,
    worker_id = :worker, lease_token = lower(hex(randomblob(16))),
    lease_expires_at = :expires_at, cancel_requested = 0
WHERE rowid IN (SELECT value FROM json_each(:rowids)) AND state = 'queued'
RETURNING {RECORD_COLUMNS}, lease_token, order_key
"""

# Inputs: ?1 tokens, ?2 stamp, ?3 scope, ?4 name. Output: none.
SAVE_BUCKET = "UPDATE limits SET tokens = ?1, stamp = ?2 WHERE scope = ?3 AND name = ?4"

# Inputs: ?1 scope, ?2 name, ?3 max_concurrency, ?4 rate, ?5 burst. Output: none.
# Invariant: the bucket (tokens, stamp) of a scope already limited is kept.
UPSERT_LIMIT = """
INSERT INTO limits (scope, name, max_concurrency, rate, burst) VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (scope, name) DO UPDATE SET
    max_concurrency = excluded.max_concurrency, rate = excluded.rate, burst = excluded.burst
"""

# Inputs: ?1 scope, ?2 name. Output: none.
DELETE_LIMIT = "DELETE FROM limits WHERE scope = ?1 AND name = ?2"

# -- extend, settle, requeue ---------------------------------------------------------------

# Inputs: ?1 JSON array of ids. Output: (id, lease_token, attempt, priority, run_at,
# cancel_requested, started_at, worker_id, created_at) of those that are running.
SELECT_RUNNING = """
SELECT id, lease_token, attempt, priority, run_at, cancel_requested, started_at, worker_id,
       created_at, keep_result
FROM tasks
WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'running'
"""

# Inputs: ?1 new expiry, ?2 id, ?3 token. Output: none.
# Invariant: only the current holder (token matches, still running) moves the expiry.
EXTEND = """
UPDATE tasks SET lease_expires_at = ?1
WHERE id = ?2 AND lease_token = ?3 AND state = 'running'
"""

# Inputs: ?1 msgpack model.Progress, ?2 id, ?3 token. Output: none.
# Invariant: only the current holder (token matches, still running) writes its progress.
PROGRESS = """
UPDATE tasks SET progress = ?1
WHERE id = ?2 AND lease_token = ?3 AND state = 'running'
"""

# Inputs: :state, :attempt, :run_at, :order_key, :result (msgpack or NULL: keep the old one),
# :finished_at (NULL unless terminal), :now, :id, :token. Output: none.
# Invariant: fenced by the token; the lease is cleared as the task leaves running.
SETTLE = """
UPDATE tasks
SET state = :state, attempt = :attempt, run_at = :run_at, order_key = :order_key,
    result = coalesce(:result, result), finished_at = :finished_at, updated_at = :now,
    lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0
WHERE id = :id AND lease_token = :token AND state = 'running'
"""

# Inputs: ?1 state (succeeded, dead or cancelled), ?2 msgpack TaskResult naming its attempt,
# ?3 now, ?4 id, ?5 token, ?6 the attempt the result names. Output: none.
# Invariant: fenced by the token and the attempt, so a row changes only when the result the
# caller packed is exactly the one SETTLE would write (attempt, run_at, order_key unchanged).
SETTLE_FINISHED = """
UPDATE tasks
SET state = ?1, result = ?2, finished_at = ?3, updated_at = ?3,
    lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0
WHERE id = ?4 AND lease_token = ?5 AND state = 'running' AND attempt = ?6
"""

# Inputs: ?1 now. Output: ids of the tasks deleted: those a settle at ?1 just made succeeded
# with keep_result 0 (no other row can match: such a task never outlives its settle).
# Invariant: one range of the tasks_kept index, whose key is finished_at + keep_result = ?1.
DELETE_FORGOTTEN = """
DELETE FROM tasks WHERE rowid IN (
    SELECT rowid FROM tasks INDEXED BY tasks_kept
    WHERE state = 'succeeded' AND keep_result IS NOT NULL AND finished_at + keep_result = ?1
      AND keep_result = 0
)
RETURNING id
"""

# Inputs: ?1 task id, ?2 attempt number, ?3 msgpack AttemptRecord. Output: none.
# Invariant: insert-only; seq (rowid) orders a task's history.
INSERT_ATTEMPT = "INSERT INTO attempts (task_id, attempt, record) VALUES (?1, ?2, ?3)"

# Inputs: ?1 now, ?2 limit. Output: (id, lease_token, attempt, priority, run_at,
# cancel_requested, started_at, worker_id, created_at, max_attempts) of running tasks whose
# lease ran out before now, oldest expiry first.
SELECT_EXPIRED = """
SELECT id, lease_token, attempt, priority, run_at, cancel_requested, started_at, worker_id,
       created_at, max_attempts
FROM tasks INDEXED BY tasks_leases
WHERE state = 'running' AND lease_expires_at < ?1
ORDER BY lease_expires_at, id
LIMIT ?2
"""

# Inputs: ?1 now, ?2 HEAD_START[priority], ?3 id. Output: none.
# Invariant: the lost attempt stays counted; the task is due at once (not before it was
# created: order_key = ?1 or created_at, the later, minus the head start).
REQUEUE = """
UPDATE tasks
SET state = 'queued', run_at = ?1, order_key = max(?1, created_at) - ?2, updated_at = ?1,
    lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0
WHERE id = ?3 AND state = 'running'
"""

# Inputs: ?1 now, ?2 id, ?3 its TaskResult (msgpack). Output: none.
# Invariant: its lease ran out on its last attempt and no cancel was requested.
EXPIRE_DEAD = """
UPDATE tasks
SET state = 'dead', finished_at = ?1, updated_at = ?1, result = ?3,
    lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0
WHERE id = ?2 AND state = 'running'
"""

# Inputs: ?1 now, ?2 id. Output: none. Invariant: cancel was requested while it ran.
EXPIRE_CANCELLED = """
UPDATE tasks
SET state = 'cancelled', finished_at = ?1, updated_at = ?1,
    lease_token = NULL, lease_expires_at = NULL, cancel_requested = 0
WHERE id = ?2 AND state = 'running'
"""

# -- admin ---------------------------------------------------------------------------------

# Inputs: ?1 JSON array of ids. Output: (id, state, attempt, priority) of the known ones.
SELECT_STATES = """
SELECT id, state, attempt, priority FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
"""

# Inputs: ?1 now, ?2 msgpack TaskResult (CANCELLED), ?3 id. Output: none.
# Invariant: only a queued or blocked task is cancelled at once (a running one is flagged instead).
CANCEL_QUEUED = """
UPDATE tasks SET state = 'cancelled', waiting = 0, updated_at = ?1, finished_at = ?1,
    result = ?2
WHERE id = ?3 AND state IN ('queued', 'blocked')
"""

# Inputs: ?1 now, ?2 id. Output: none. Invariant: the worker learns it through extend.
REQUEST_CANCEL = """
UPDATE tasks SET cancel_requested = 1, updated_at = ?1 WHERE id = ?2 AND state = 'running'
"""

# Inputs: ?1 now, ?2 HEAD_START[priority], ?3 id. Output: none.
# Invariant: only dead or cancelled tasks come back, due now (not before they were created:
# order_key = ?1 or created_at, the later, minus the head start); history and last result
# are kept.
REPLAY = """
UPDATE tasks
SET state = 'queued', attempt = 0, run_at = ?1, order_key = max(?1, created_at) - ?2,
    updated_at = ?1,
    finished_at = NULL, worker_id = NULL, cancel_requested = 0
WHERE id = ?3 AND state IN ('dead', 'cancelled')
"""

# Inputs: ?1 JSON array of terminal states, ?2 cutoff, ?3 limit. Output: ids of the tasks
# finished longest ago first. Invariant: finished_at is set exactly in terminal states.
SELECT_PURGEABLE = """
SELECT id FROM tasks INDEXED BY tasks_finished
WHERE finished_at < ?2 AND state IN (SELECT value FROM json_each(?1))
  AND (state <> 'succeeded' OR keep_result IS NULL)
ORDER BY finished_at, id
LIMIT ?3
"""

# Inputs: ?1 now, ?2 limit. Output: ids of succeeded tasks whose own retention ran out
# (finished_at + keep_result < now), the earliest expiry first (model.records.kept_until).
SELECT_KEPT_EXPIRED = """
SELECT id FROM tasks INDEXED BY tasks_kept
WHERE state = 'succeeded' AND keep_result IS NOT NULL AND finished_at + keep_result < ?1
ORDER BY finished_at + keep_result, id
LIMIT ?2
"""

# Inputs: ?1 JSON array of ids. Output: none. Invariant: history goes with its task.
DELETE_TASKS = "DELETE FROM tasks WHERE id IN (SELECT value FROM json_each(?1))"
DELETE_ATTEMPTS = "DELETE FROM attempts WHERE task_id IN (SELECT value FROM json_each(?1))"

# Inputs: ?1 queue name. Output: none. Idempotent.
PAUSE = "INSERT OR IGNORE INTO paused_queues (queue) VALUES (?1)"
RESUME = "DELETE FROM paused_queues WHERE queue = ?1"

# Inputs: ?1 worker id, ?2 last_seen, ?3 msgpack WorkerInfo. Output: none. Upsert by id.
RECORD_WORKER = "INSERT OR REPLACE INTO workers (id, last_seen, info) VALUES (?1, ?2, ?3)"
# Inputs: ?1 worker id. Output: none.
FORGET_WORKER = "DELETE FROM workers WHERE id = ?1"

# Inputs: :name, :holder, :now, :expires_at. Output: one row if `holder` now holds `name`.
# Invariant: one atomic upsert, so processes sharing the file never both hold it: the row is
# taken when absent, renewed by its holder, or taken over once expired (expires_at <= now).
LEADER = """
INSERT INTO leaders (name, holder, expires_at) VALUES (:name, :holder, :expires_at)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leaders.holder = excluded.holder OR leaders.expires_at <= :now
RETURNING holder
"""

# Inputs: ?1 name, ?2 holder. Output: none. Invariant: only the holder frees it.
RESIGN = "DELETE FROM leaders WHERE name = ?1 AND holder = ?2"

# -- reads ---------------------------------------------------------------------------------

# Inputs: ?1 JSON array of ids. Output: RECORD_COLUMNS of the known ones.
SELECT_RECORDS = f"""
SELECT {RECORD_COLUMNS} FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
"""

# Inputs: none. Output: (queue, state, priority, count, oldest created_at) per group,
# ordered by queue, state, priority. A full scan: for dashboards, not the hot path.
COUNTS = """
SELECT queue, state, priority, count(*), CASE state WHEN 'queued' THEN min(created_at) END
FROM tasks
GROUP BY queue, state, priority
ORDER BY queue, state, priority
"""

# Inputs: none. Output: the paused queue names.
SELECT_PAUSED = "SELECT queue FROM paused_queues"

# Inputs: ?1 instance, ?2 expires_at, ?3 report bytes. Output: none.
RECORD_INSTANCE = (
    "INSERT OR REPLACE INTO instances (instance, expires_at, data) VALUES (?1, ?2, ?3)"
)
# Inputs: ?1 now. Output: none. Deletes the reports that expired before now.
DROP_EXPIRED_INSTANCES = "DELETE FROM instances WHERE expires_at < ?1"
# Inputs: ?1 now. Output: (instance, expires_at, data) of reports not expired, by instance.
SELECT_INSTANCES = (
    "SELECT instance, expires_at, data FROM instances WHERE expires_at >= ?1 ORDER BY instance"
)

# Inputs: ?1 seen_since. Output: msgpack WorkerInfo of workers seen since then, by id.
SELECT_WORKERS = "SELECT info FROM workers WHERE last_seen >= ?1 ORDER BY id"

# Inputs: none. Output: a number that changes when another connection commits.
DATA_VERSION = "PRAGMA data_version"

# Remote control (ADR 0036). Inputs: ?1 instance, ?2 sent_at, ?3 the packed Control.
SEND_CONTROL = "INSERT INTO controls (instance, sent_at, control) VALUES (?1, ?2, ?3)"
# Inputs: ?1 the oldest sent_at kept. Output: none.
EXPIRE_CONTROLS = "DELETE FROM controls WHERE sent_at < ?1"
# Inputs: ?1 instance. Output: (seq, control) of its waiting commands, oldest first.
SELECT_CONTROLS = "SELECT seq, control FROM controls WHERE instance = ?1 ORDER BY seq"
# Inputs: ?1 instance, ?2 the highest seq taken. Output: none.
DELETE_CONTROLS = "DELETE FROM controls WHERE instance = ?1 AND seq <= ?2"

# Inputs: ?1 a JSON list of ids. Output: the ids of those that are finished (deletable).
SELECT_FINISHED = """
SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?1))
  AND state IN ('succeeded', 'dead', 'cancelled')
"""
