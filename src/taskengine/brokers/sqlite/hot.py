"""The hot-path write operations: functions of the write connection run by the writer thread.

Each runs inside the writer's transaction (and its own SAVEPOINT), so it sees a stable store,
holds the write lock throughout, and is undone alone if it raises.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, NamedTuple

from msgspec.structs import replace

from taskengine.brokers.base import EnqueueResult
from taskengine.brokers.semantics import LEASE_EXPIRED, as_received, expiry_result, honour_cancel
from taskengine.brokers.sqlite import queries as q
from taskengine.brokers.sqlite.codec import (
    attempt_line,
    histories,
    json_list,
    record_from_row,
    task_params,
)
from taskengine.errors import QueueFull
from taskengine.model import (
    AttemptRecord,
    Lease,
    LeaseStatus,
    Outcome,
    Priority,
    ResultStatus,
    Task,
)
from taskengine.model.outcome import ATTEMPT_REFUNDED, NEEDS_RESULT
from taskengine.model.priority import HEAD_START, due_at, order_key
from taskengine.model.serializer import pack
from taskengine.model.state import TERMINAL_STATES


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


def enqueue(
    conn: sqlite3.Connection, tasks: Sequence[Task], now: float, max_depth: int
) -> list[EnqueueResult]:
    """Insert the new tasks; duplicates (by id, then idempotency key) return the stored id."""
    known_ids = {
        row[0] for row in conn.execute(q.SELECT_KNOWN_IDS, (json_list(t.id for t in tasks),))
    }
    keys = [t.idempotency_key for t in tasks if t.idempotency_key is not None]
    known_keys: dict[str, str] = (
        dict(conn.execute(q.SELECT_KNOWN_KEYS, (json_list(keys),))) if keys else {}
    )
    results: list[EnqueueResult] = []
    fresh: list[Task] = []
    for task in tasks:
        if task.id in known_ids:
            results.append(EnqueueResult(task.id, False))
            continue
        key = task.idempotency_key
        if key is not None and key in known_keys:
            results.append(EnqueueResult(known_keys[key], False))
            continue
        known_ids.add(task.id)
        if key is not None:
            known_keys[key] = task.id
        fresh.append(task)
        results.append(EnqueueResult(task.id, True))
    depth = int(conn.execute(q.SELECT_DEPTH).fetchone()[0])
    if depth + len(fresh) > max_depth:  # as the reference: also when nothing is new
        raise QueueFull(depth, max_depth, len(fresh))
    if fresh:
        rows = [task_params(as_received(task, now), now) for task in fresh]
        conn.executemany(q.INSERT_TASK, rows)
    return results


def reserve(
    conn: sqlite3.Connection,
    worker_id: str,
    limit: int,
    lease_for: float,
    now: float,
    queues: Sequence[str] | None,
) -> tuple[list[Lease], int]:
    """Claim due tasks in (order_key, id) order; also return the store's data_version."""
    expires_at = now + lease_for
    params = {
        "now": now,
        "expires_at": expires_at,
        "worker": worker_id,
        "limit": limit,
        "max_key": max(order_key(p, now) for p in Priority),
        "queues": None if queues is None else json_list(queues),
    }
    rows = conn.execute(q.RESERVE, params).fetchall()
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
    return leases, data_version(conn)


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


def settle(conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float) -> list[bool]:
    """Apply each outcome whose token is current, in input order; the rest are refused. A
    retry, snooze or release of a task with a cancel request cancels it (brokers.semantics)."""
    running = _running(conn, [outcome.task_id for outcome in outcomes])
    applied: list[bool] = []
    updates: list[dict[str, Any]] = []
    lines: list[tuple[str, int, bytes]] = []
    for outcome in outcomes:
        current = running.get(outcome.task_id)
        if current is None or current.token != outcome.token:
            applied.append(False)
            continue
        del running[outcome.task_id]  # a second outcome for it in this batch is refused
        if current.cancel_requested:
            outcome = honour_cancel(outcome, now) or outcome
        updates.append(_settled(current, outcome, now))
        result = outcome.result
        if outcome.kind in NEEDS_RESULT and result is not None:
            line = AttemptRecord(
                attempt=current.attempt,
                status=result.status,
                worker_id=result.worker_id,
                finished_at=result.completed_at,
                duration=result.duration,
                error=result.error,
            )
            lines.append((current.id, current.attempt, attempt_line(line)))
        applied.append(True)
    if updates:
        conn.executemany(q.SETTLE, updates)
    if lines:
        conn.executemany(q.INSERT_ATTEMPT, lines)
    return applied


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
        cancel = bool(task.cancel_requested)
        line = AttemptRecord(
            attempt=task.attempt,
            status=ResultStatus.CANCELLED if cancel else ResultStatus.FAILURE,
            worker_id=task.worker_id,
            finished_at=now,
            duration=now - (task.started_at if task.started_at is not None else now),
            error=LEASE_EXPIRED,
        )
        lines.append((task.id, task.attempt, attempt_line(line)))
        if cancel:
            cancelled.append((now, task.id))
        elif task.attempt >= max_attempts:
            result = expiry_result(
                task.id,
                attempt=task.attempt,
                max_attempts=max_attempts,
                worker_id=task.worker_id,
                now=now,
                duration=line.duration,
            )
            dead.append((now, task.id, pack(result)))
        else:
            requeued.append((now, HEAD_START[task.priority], task.id))
    if requeued:
        conn.executemany(q.REQUEUE, requeued)
    if cancelled:
        conn.executemany(q.EXPIRE_CANCELLED, cancelled)
    if dead:
        conn.executemany(q.EXPIRE_DEAD, dead)
    if lines:
        conn.executemany(q.INSERT_ATTEMPT, lines)
    return [row[0] for row in rows]


def data_version(conn: sqlite3.Connection) -> int:
    """The connection's data_version: it changes when another connection commits."""
    return int(conn.execute(q.DATA_VERSION).fetchone()[0])


def _running(conn: sqlite3.Connection, ids: list[str]) -> dict[str, Running]:
    if not ids:
        return {}
    return {row[0]: Running(*row) for row in conn.execute(q.SELECT_RUNNING, (json_list(ids),))}
