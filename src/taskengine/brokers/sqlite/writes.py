"""The write operations: functions of the write connection run by the writer thread.

Each runs inside the writer's transaction (and its own SAVEPOINT), so it sees a stable store,
holds the write lock throughout, and is undone alone if it raises.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from msgspec.structs import replace

from taskengine.brokers.base import (
    CONTROL_TTL,
    CancelResult,
    Control,
    EnqueueResult,
    ReplayResult,
)
from taskengine.brokers.batches import lock_keys, split_new, split_unique
from taskengine.brokers.limits import Gate
from taskengine.brokers.sqlite import queries as q
from taskengine.brokers.sqlite import waits
from taskengine.brokers.sqlite.codec import (
    attempt_line,
    histories,
    json_list,
    limit_from_row,
    record_from_row,
)
from taskengine.errors import QueueFull
from taskengine.model import (
    Lease,
    LeaseStatus,
    Outcome,
    OutcomeKind,
    Priority,
    ProgressReport,
    Task,
    TaskState,
)
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.outcome import ATTEMPT_REFUNDED
from taskengine.model.priority import HEAD_START, due_at, order_key
from taskengine.model.records import (
    cancelled_result,
    deleted_at_settle,
    expire,
    honour_cancel,
    outcome_line,
)
from taskengine.model.serializer import pack, unpack
from taskengine.model.state import REPLAYABLE_STATES, TERMINAL_STATES
from taskengine.model.unique import UniqueLock, decode_states, encode_states, lock_holds
from taskengine.model.worker import WorkerInfo

# The outcomes that end a task with the result they carry: settled without a read first.
_QUEUED = TaskState.QUEUED.value
_FINISHING = frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.DEAD, OutcomeKind.CANCELLED})


class Running(NamedTuple):
    """What settle, extend and requeue need of a running task (queries.SELECT_RUNNING)."""

    id: str
    token: str
    attempt: int
    priority: int
    run_at: float
    cancel_requested: int
    started_at: float | None
    worker_id: str | None
    created_at: float
    keep_result: float | None = None  # read by settle only (queries.SELECT_RUNNING)


def enqueue(
    conn: sqlite3.Connection,
    tasks: Sequence[Task],
    now: float,
    max_depth: int,
    unique: Sequence[UniqueLock | None] | None = None,
) -> list[EnqueueResult]:
    """Insert the new tasks; duplicates (by id, then idempotency key, then a unique lock that
    holds) return the stored id; the new tasks take their unique locks."""
    known_ids = {
        row[0] for row in conn.execute(q.SELECT_KNOWN_IDS, (json_list(t.id for t in tasks),))
    }
    keys = [t.idempotency_key for t in tasks if t.idempotency_key is not None]
    known_keys: dict[str, str] = (
        dict(conn.execute(q.SELECT_KNOWN_KEYS, (json_list(keys),))) if keys else {}
    )
    results, fresh = split_new(tasks, known_ids, known_keys)
    taken: list[tuple[Task, UniqueLock]] = []
    if unique:
        held = {
            key: holder
            for key, holder, until, states, state in conn.execute(
                q.SELECT_LOCKS, (json_list(lock_keys(unique)),)
            )
            if lock_holds(until, decode_states(states), state and TaskState(state), now)
        }
        results, fresh, taken = split_unique(results, fresh, unique, tasks, held)
    depth = int(conn.execute(q.SELECT_DEPTH).fetchone()[0])
    if depth + len(fresh) > max_depth:  # as the reference: also when nothing is new
        raise QueueFull(depth, max_depth, len(fresh))
    if taken:
        conn.executemany(
            q.PUT_LOCK,
            [
                (lock.key, task.id, lock.until(now), encode_states(lock.states))
                for task, lock in taken
            ],
        )
    if fresh:
        waits.insert(conn, fresh, now)
    return results


def reserve(
    conn: sqlite3.Connection,
    worker_id: str,
    limit: int,
    lease_for: float,
    now: float,
    queues: Sequence[str] | None,
) -> tuple[list[Lease], int, float | None, bool]:
    """Claim due tasks in (order_key, id) order under the stored limits; also return the
    store's data_version, the wait until an empty bucket's next token and whether any limit
    is stored (ADR 0038)."""
    expires_at = now + lease_for
    params: dict[str, Any] = {
        "now": now,
        "expires_at": expires_at,
        "worker": worker_id,
        "limit": limit,
        "max_key": max(order_key(p, now) for p in Priority),
        "queues": None if queues is None else json_list(queues),
    }
    limits = conn.execute(q.SELECT_LIMITS).fetchall()
    retry_in: float | None = None
    if limits:
        rows, retry_in = _reserve_limited(conn, params, limits, now)
    else:
        rows = conn.execute(q.RESERVE, params).fetchall()
    if rows:
        conn.execute(q.ADD_DEPTH, (-len(rows),))
    rows.sort(key=lambda row: (row[-1], row[0]))
    lines = histories(conn, (row[0] for row in rows)) if rows else {}
    leases = [
        Lease(
            record=record_from_row(row, lines.get(row[0], [])),
            token=row[-2],
            expires_at=expires_at,
        )
        for row in rows
    ]
    return leases, data_version(conn), retry_in, bool(limits)


# Candidate rounds per limited reserve: a round whose tasks a partly full scope refused is
# followed by one that skips the scopes now full, so tasks behind them are still claimed.
_LIMITED_ROUNDS = 3


def _reserve_limited(
    conn: sqlite3.Connection, params: dict[str, Any], stored: list[Any], now: float
) -> tuple[list[Any], float | None]:
    """Claim under the limits: count the limited scopes' running tasks, admit candidates
    through a Gate, claim the admitted rows and save the buckets; all in this transaction."""
    limits = [limit_from_row(row) for row in stored]
    buckets = {
        (row[0], row[1]): (float(row[5]), float(row[6])) for row in stored if row[5] is not None
    }
    limited: dict[str, list[str]] = {"type": [], "queue": []}
    for limit in limits:
        if limit.max_concurrency is not None:
            limited[limit.scope].append(limit.name)
    running = {
        (row[0], row[1]): int(row[2])
        for row in conn.execute(
            q.COUNT_RUNNING,
            {"types": json_list(limited["type"]), "queues": json_list(limited["queue"])},
        )
    }
    gate = Gate(limits, running, buckets, now)
    chosen: list[int] = []
    seen: list[int] = []
    for _ in range(_LIMITED_ROUNDS):
        want = params["limit"] - len(chosen)
        round_params = params | {
            "limit": want,
            "skip_types": json_list(gate.full(LimitScope.TYPE)),
            "skip_queues": json_list(gate.full(LimitScope.QUEUE)),
            "seen": json_list(seen),
        }
        candidates = conn.execute(q.RESERVE_CANDIDATES, round_params).fetchall()
        refused = False
        for rowid, type_name, queue in candidates:
            seen.append(rowid)
            if gate.admit(type_name, queue):
                chosen.append(rowid)
            else:
                refused = True
        if len(chosen) == params["limit"] or len(candidates) < want or not refused:
            break
    gate.note_held_back()
    conn.executemany(
        q.SAVE_BUCKET,
        [(tokens, stamp, scope, name) for (scope, name), (tokens, stamp) in gate.buckets().items()],
    )
    if not chosen:
        return [], gate.retry_in
    claim = params | {"rowids": json_list(chosen)}
    return conn.execute(q.CLAIM_ROWIDS, claim).fetchall(), gate.retry_in


def set_limits(conn: sqlite3.Connection, limits: Sequence[Limit]) -> None:
    """Store each limit in place of its scope's, keeping its bucket; an empty one removes it."""
    for limit in limits:
        if limit.empty:
            conn.execute(q.DELETE_LIMIT, (str(limit.scope), limit.name))
        else:
            conn.execute(
                q.UPSERT_LIMIT,
                (str(limit.scope), limit.name, limit.max_concurrency, limit.rate, limit.burst),
            )


def extend(
    conn: sqlite3.Connection, leases: Sequence[Lease], lease_for: float, now: float
) -> list[LeaseStatus]:
    """Move the expiry of each held lease; report lost leases and cancel requests."""
    running = _running(conn, [lease.task_id for lease in leases])
    statuses: list[LeaseStatus] = []
    updates: list[tuple[float, str, str]] = []
    for lease in leases:
        current = running.get(lease.task_id)
        if current is None or current.token != lease.token:
            statuses.append(LeaseStatus.LOST)
            continue
        updates.append((now + lease_for, lease.task_id, lease.token))
        statuses.append(
            LeaseStatus.CANCEL_REQUESTED if current.cancel_requested else LeaseStatus.HELD
        )
    if updates:
        conn.executemany(q.EXTEND, updates)
    return statuses


def record_progress(conn: sqlite3.Connection, reports: Sequence[ProgressReport]) -> list[bool]:
    """Store each report's progress on its task if its token is current; aligned bools."""
    running = _running(conn, [report.task_id for report in reports])
    applied: list[bool] = []
    updates: list[tuple[bytes, str, str]] = []
    for report in reports:
        current = running.get(report.task_id)
        held = current is not None and current.token == report.token
        if held:
            updates.append((pack(report.progress), report.task_id, report.token))
        applied.append(held)
    if updates:
        conn.executemany(q.PROGRESS, updates)
    return applied


def settle(
    conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float
) -> tuple[list[bool], bool]:
    """Apply each outcome whose token is current, in input order; the rest are refused. A
    retry, snooze or release of a task with a cancel request cancels it (model.records).
    Tasks that ended release or cancel their dependents (waits.release); the second value
    says whether one became queued."""
    finished = _settle_finished(conn, outcomes, now)
    if finished is not None:
        return finished
    return _settle_read_first(conn, outcomes, now)


def _settle_finished(
    conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float
) -> tuple[list[bool], bool] | None:
    """The common batch, without reading the rows first: every outcome ends its task
    (succeeded, dead, cancelled) with a result naming its attempt, one per task. Written
    in a savepoint; None (nothing written) unless every outcome applied."""
    params: list[tuple[Any, ...]] = []
    for outcome in outcomes:
        result = outcome.result
        if outcome.kind not in _FINISHING or result is None or result.attempt < 1:
            return None
        state = outcome.state.value
        params.append((state, pack(result), now, outcome.task_id, outcome.token, result.attempt))
    if len({outcome.task_id for outcome in outcomes}) != len(outcomes):
        return None
    conn.execute("SAVEPOINT settle_finished")
    if conn.executemany(q.SETTLE_FINISHED, params).rowcount != len(params):
        # A lease lost or a result naming another attempt: undo, and read the rows first.
        conn.execute("ROLLBACK TO settle_finished")
        conn.execute("RELEASE settle_finished")
        return None
    forgotten: set[str] = set()
    if any(outcome.kind is OutcomeKind.SUCCEEDED for outcome in outcomes):
        forgotten = {row[0] for row in conn.execute(q.DELETE_FORGOTTEN, (now,))}
        if forgotten:
            conn.execute(q.DELETE_ATTEMPTS, (json_list(forgotten),))
    lines = [
        (outcome.task_id, line.attempt, attempt_line(line))
        for outcome in outcomes
        if outcome.task_id not in forgotten
        and (line := outcome_line(outcome, outcome.result.attempt if outcome.result else 0))
        is not None
    ]
    if lines:
        conn.executemany(q.INSERT_ATTEMPT, lines)
    # Every task here ended: its dependents are released or cancelled in this transaction.
    released = waits.release(conn, [(o.task_id, o.state) for o in outcomes], now)
    conn.execute("RELEASE settle_finished")
    return [True] * len(outcomes), released


def _settle_read_first(
    conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float
) -> tuple[list[bool], bool]:
    """Any batch: read the running rows, then apply the outcomes whose token is current."""
    running = _running(conn, [outcome.task_id for outcome in outcomes])
    applied: list[bool] = []
    updates: list[dict[str, Any]] = []
    lines: list[tuple[str, int, bytes]] = []
    ended: list[tuple[str, TaskState]] = []
    forgotten: list[str] = []
    for outcome in outcomes:
        current = running.get(outcome.task_id)
        if current is None or current.token != outcome.token:
            applied.append(False)
            continue
        del running[outcome.task_id]  # a second outcome for it in this batch is refused
        if current.cancel_requested:
            outcome = honour_cancel(outcome, now) or outcome
        applied.append(True)
        if deleted_at_settle(outcome.state, current.keep_result):
            forgotten.append(current.id)
            ended.append((current.id, outcome.state))  # its dependents are released
            continue
        updates.append(_settled(current, outcome, now))
        if outcome.state in TERMINAL_STATES:
            ended.append((current.id, outcome.state))
        line = outcome_line(outcome, current.attempt)
        if line is not None:
            lines.append((current.id, current.attempt, attempt_line(line)))
    if forgotten:
        doomed = json_list(forgotten)
        conn.execute(q.DELETE_ATTEMPTS, (doomed,))
        conn.execute(q.DELETE_TASKS, (doomed,))
    if updates:
        conn.executemany(q.SETTLE, updates)
        queued = sum(1 for update in updates if update["state"] == _QUEUED)
        if queued:
            conn.execute(q.ADD_DEPTH, (queued,))
    if lines:
        conn.executemany(q.INSERT_ATTEMPT, lines)
    return applied, waits.release(conn, ended, now)


def _settled(current: Running, outcome: Outcome, now: float) -> dict[str, Any]:
    """The parameters of queries.SETTLE for one accepted outcome."""
    state = outcome.state
    run_at = current.run_at if outcome.run_at is None else outcome.run_at
    result = outcome.result
    refunded = outcome.kind in ATTEMPT_REFUNDED
    return {
        "state": state.value,
        "attempt": current.attempt - 1 if refunded else current.attempt,
        "run_at": run_at,
        "order_key": order_key(current.priority, due_at(run_at, current.created_at)),
        "result": None if result is None else pack(replace(result, attempt=current.attempt)),
        "finished_at": now if state in TERMINAL_STATES else None,
        "now": now,
        "id": current.id,
        "token": current.token,
    }


def requeue_expired(conn: sqlite3.Connection, now: float, limit: int) -> list[str]:
    """Requeue running tasks whose lease ran out, oldest expiry first (cancel them if asked;
    on their last attempt they are dead)."""
    rows = conn.execute(q.SELECT_EXPIRED, (now, limit)).fetchall()
    requeued: list[tuple[float, float, str]] = []
    cancelled: list[tuple[float, str]] = []
    dead: list[tuple[float, str, bytes]] = []
    lines: list[tuple[str, int, bytes]] = []
    for *fields, max_attempts in rows:
        task = Running(*fields)
        expiry = expire(
            task.id,
            attempt=task.attempt,
            max_attempts=max_attempts,
            cancel_requested=bool(task.cancel_requested),
            worker_id=task.worker_id,
            started_at=task.started_at,
            now=now,
        )
        lines.append((task.id, task.attempt, attempt_line(expiry.line)))
        if expiry.state is TaskState.CANCELLED:
            cancelled.append((now, task.id))
        elif expiry.result is not None:
            dead.append((now, task.id, pack(expiry.result)))
        else:
            requeued.append((now, HEAD_START[task.priority], task.id))
    if requeued:
        count = conn.executemany(q.REQUEUE, requeued).rowcount
        conn.execute(q.ADD_DEPTH, (count,))
    if cancelled:
        conn.executemany(q.EXPIRE_CANCELLED, cancelled)
    if dead:
        conn.executemany(q.EXPIRE_DEAD, dead)
    if lines:
        conn.executemany(q.INSERT_ATTEMPT, lines)
    ended = [(task_id, TaskState.CANCELLED) for _, task_id in cancelled]
    ended += [(task_id, TaskState.DEAD) for _, task_id, _ in dead]
    waits.release(conn, ended, now)
    return [row[0] for row in rows]


def data_version(conn: sqlite3.Connection) -> int:
    """The connection's data_version: it changes when another connection commits."""
    return int(conn.execute(q.DATA_VERSION).fetchone()[0])


def _running(conn: sqlite3.Connection, ids: list[str]) -> dict[str, Running]:
    if not ids:
        return {}
    return {row[0]: Running(*row) for row in conn.execute(q.SELECT_RUNNING, (json_list(ids),))}


# -- admin ---------------------------------------------------------------------------------


def _states(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[TaskState, int, int]]:
    """(state, attempt, priority) of each known task among `ids`."""
    if not ids:
        return {}
    rows = conn.execute(q.SELECT_STATES, (json_list(ids),))
    return {row[0]: (TaskState(row[1]), row[2], row[3]) for row in rows}


def cancel(conn: sqlite3.Connection, ids: Sequence[str], now: float) -> list[CancelResult]:
    """Cancel queued tasks, flag running ones; answers in input order, repeats see the first."""
    known = _states(conn, ids)
    results: list[CancelResult] = []
    ended: list[tuple[str, TaskState]] = []
    for task_id in ids:
        found = known.get(task_id)
        if found is None:
            results.append(CancelResult.NOT_FOUND)
            continue
        state, attempt, priority = found
        if state in (TaskState.QUEUED, TaskState.BLOCKED):
            result = cancelled_result(task_id, now, attempt)
            conn.execute(q.CANCEL_QUEUED, (now, pack(result), task_id))
            if state is TaskState.QUEUED:  # a blocked task was never counted
                conn.execute(q.ADD_DEPTH, (-1,))
            known[task_id] = (TaskState.CANCELLED, attempt, priority)
            ended.append((task_id, TaskState.CANCELLED))
            results.append(CancelResult.CANCELLED)
        elif state is TaskState.RUNNING:
            conn.execute(q.REQUEST_CANCEL, (now, task_id))
            results.append(CancelResult.REQUESTED)
        else:
            results.append(CancelResult.FINISHED)
    waits.release(conn, ended, now)  # the ids named are cancelled as asked; then dependents
    return results


def replay(conn: sqlite3.Connection, ids: Sequence[str], now: float) -> list[ReplayResult]:
    """Queue dead or cancelled tasks again, due now, attempt count reset; in input order."""
    known = _states(conn, ids)
    parents = waits.Parents(conn, ids)
    results: list[ReplayResult] = []
    for task_id in ids:
        found = known.get(task_id)
        if found is None:
            results.append(ReplayResult.NOT_FOUND)
            continue
        state, _, priority = found
        if state not in REPLAYABLE_STATES:
            results.append(ReplayResult.NOT_REPLAYABLE)
            continue
        gated = parents.replay(task_id, now, HEAD_START[priority])  # a blocked one is stored there
        if gated is None:
            results.append(ReplayResult.NOT_REPLAYABLE)
            continue
        if gated is TaskState.QUEUED:
            conn.execute(q.REPLAY, (now, HEAD_START[priority], task_id))
            conn.execute(q.ADD_DEPTH, (1,))
        known[task_id] = (gated, 0, priority)
        results.append(ReplayResult.REPLAYED)
    return results


def purge(
    conn: sqlite3.Connection, states: Sequence[TaskState], finished_before: float, limit: int
) -> int:
    """Delete up to `limit` terminal tasks (and their history), finished longest ago first."""
    wanted = sorted(TaskState(state).value for state in set(states) & TERMINAL_STATES)
    if not wanted:
        return 0
    rows = conn.execute(q.SELECT_PURGEABLE, (json_list(wanted), finished_before, limit))
    doomed = json_list(row[0] for row in rows)
    conn.execute(q.DELETE_ATTEMPTS, (doomed,))
    return conn.execute(q.DELETE_TASKS, (doomed,)).rowcount


def delete(conn: sqlite3.Connection, ids: Sequence[str]) -> list[bool]:
    """Delete the finished tasks among `ids` with their history; True where deleted."""
    finished = {row[0] for row in conn.execute(q.SELECT_FINISHED, (json_list(ids),))}
    doomed = json_list(sorted(finished))
    conn.execute(q.DELETE_ATTEMPTS, (doomed,))
    conn.execute(q.DELETE_TASKS, (doomed,))
    return [task_id in finished for task_id in ids]


def purge_kept(conn: sqlite3.Connection, now: float, limit: int) -> int:
    """Delete up to `limit` succeeded tasks whose own retention ran out, earliest first."""
    rows = conn.execute(q.SELECT_KEPT_EXPIRED, (now, limit))
    doomed = json_list(row[0] for row in rows)
    conn.execute(q.DELETE_ATTEMPTS, (doomed,))
    return conn.execute(q.DELETE_TASKS, (doomed,)).rowcount


def pause(conn: sqlite3.Connection, queues: Sequence[str]) -> None:
    """Mark the queues paused (idempotent)."""
    conn.executemany(q.PAUSE, [(name,) for name in queues])


def resume(conn: sqlite3.Connection, queues: Sequence[str]) -> None:
    """Unmark the queues (idempotent)."""
    conn.executemany(q.RESUME, [(name,) for name in queues])


def record_workers(conn: sqlite3.Connection, workers: Sequence[WorkerInfo]) -> None:
    """Insert or replace each worker by id (a later duplicate in the batch wins)."""
    conn.executemany(q.RECORD_WORKER, [(w.id, w.last_seen, pack(w)) for w in workers])


def forget_workers(conn: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Delete the workers with these ids."""
    conn.executemany(q.FORGET_WORKER, [(worker_id,) for worker_id in ids])


def send_control(conn: sqlite3.Connection, instance: str, controls: Sequence[Control]) -> None:
    """Append commands for `instance`; drop every command older than CONTROL_TTL."""
    newest = max(control.sent_at for control in controls)
    conn.execute(q.EXPIRE_CONTROLS, (newest - CONTROL_TTL,))
    conn.executemany(q.SEND_CONTROL, [(instance, c.sent_at, pack(c)) for c in controls])


def take_controls(conn: sqlite3.Connection, instance: str) -> list[Control]:
    """Delete and return the commands waiting for `instance`, oldest first."""
    rows = conn.execute(q.SELECT_CONTROLS, (instance,)).fetchall()
    if rows:
        conn.execute(q.DELETE_CONTROLS, (instance, rows[-1][0]))
    return [unpack(row[1], Control) for row in rows]


def record_instance(
    conn: sqlite3.Connection, instance: str, data: bytes, now: float, ttl: float
) -> None:
    """Replace `instance`'s report, kept until `now + ttl`; delete those expired before `now`."""
    conn.execute(q.DROP_EXPIRED_INSTANCES, (now,))
    conn.execute(q.RECORD_INSTANCE, (instance, now + ttl, data))


def leader(conn: sqlite3.Connection, name: str, holder: str, ttl: float, now: float) -> bool:
    """Take, renew or fail to take the singleton lease `name` in one upsert."""
    params = {"name": name, "holder": holder, "now": now, "expires_at": now + ttl}
    return conn.execute(q.LEADER, params).fetchone() is not None


def resign(conn: sqlite3.Connection, name: str, holder: str) -> None:
    """Free `name` if `holder` holds it."""
    conn.execute(q.RESIGN, (name, holder))
