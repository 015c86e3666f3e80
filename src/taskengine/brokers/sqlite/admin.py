"""The admin write operations: functions of the write connection run by the writer thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from taskengine.brokers.base import CancelResult, ReplayResult
from taskengine.brokers.sqlite import queries as q
from taskengine.brokers.sqlite.codec import json_list
from taskengine.model import ResultStatus, TaskResult, TaskState
from taskengine.model.priority import HEAD_START
from taskengine.model.serializer import pack
from taskengine.model.state import REPLAYABLE_STATES, TERMINAL_STATES
from taskengine.model.worker import WorkerInfo

CANCELLED_BEFORE_RUN = "cancelled before it ran"


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
    for task_id in ids:
        found = known.get(task_id)
        if found is None:
            results.append(CancelResult.NOT_FOUND)
            continue
        state, attempt, priority = found
        if state is TaskState.QUEUED:
            result = TaskResult(
                task_id=task_id,
                status=ResultStatus.CANCELLED,
                completed_at=now,
                error=CANCELLED_BEFORE_RUN,
                attempt=attempt,
            )
            conn.execute(q.CANCEL_QUEUED, (now, pack(result), task_id))
            known[task_id] = (TaskState.CANCELLED, attempt, priority)
            results.append(CancelResult.CANCELLED)
        elif state is TaskState.RUNNING:
            conn.execute(q.REQUEST_CANCEL, (now, task_id))
            results.append(CancelResult.REQUESTED)
        else:
            results.append(CancelResult.FINISHED)
    return results


def replay(conn: sqlite3.Connection, ids: Sequence[str], now: float) -> list[ReplayResult]:
    """Queue dead or cancelled tasks again, due now, attempt count reset; in input order."""
    known = _states(conn, ids)
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
        conn.execute(q.REPLAY, (now, HEAD_START[priority], task_id))
        known[task_id] = (TaskState.QUEUED, 0, priority)
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


def leader(conn: sqlite3.Connection, name: str, holder: str, ttl: float, now: float) -> bool:
    """Take, renew or fail to take the singleton lease `name` in one upsert."""
    params = {"name": name, "holder": holder, "now": now, "expires_at": now + ttl}
    return conn.execute(q.LEADER, params).fetchone() is not None


def resign(conn: sqlite3.Connection, name: str, holder: str) -> None:
    """Free `name` if `holder` holds it."""
    conn.execute(q.RESIGN, (name, holder))
