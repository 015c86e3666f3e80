"""Rows of the SQLite store to and from model structs (MessagePack via model.serializer)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from taskengine.model import (
    AttemptRecord,
    Priority,
    Progress,
    Task,
    TaskRecord,
    TaskResult,
    TaskState,
)
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.priority import due_at, order_key
from taskengine.model.serializer import from_json, pack, to_json, unpack

# The columns a TaskRecord is built from, in the order `record_from_row` reads them.
RECORD_COLUMNS = (
    "id, type, payload, priority, queue, created_at, run_at, timeout, max_attempts, attempt,"
    " idempotency_key, state, updated_at, started_at, finished_at, worker_id,"
    " lease_expires_at, cancel_requested, result, trace, keep_result, progress, depends_on,"
    " on_parent_failure, workflow, waiting"
)
_RECORD_WIDTH = 26
# Enum members by stored value: a dict lookup costs a tenth of calling the enum (every lease).
_PRIORITIES = {int(p): p for p in Priority}
_STATES = {s.value: s for s in TaskState}

Row = tuple[Any, ...]


def json_list(values: Iterable[Any]) -> str:
    """Encode values as a JSON array, the one parameter `json_each(?)` expands in SQL."""
    return to_json(list(values)).decode()


def task_params(
    task: Task,
    now: float,
    state: TaskState = TaskState.QUEUED,
    waiting: int = 0,
    result: TaskResult | None = None,
) -> tuple[Any, ...]:
    """The parameters of queries.INSERT_TASK for a freshly enqueued task (blocked, or
    cancelled at once, when its parents say so: model.deps.gate)."""
    return (
        task.id,
        task.type,
        pack(task.payload),
        int(task.priority),
        task.queue,
        task.created_at,
        task.run_at,
        order_key(task.priority, due_at(task.run_at, task.created_at)),
        task.timeout,
        task.max_attempts,
        task.attempt,
        task.idempotency_key,
        now,
        task.trace,
        state.value,
        json_list(task.depends_on) if task.depends_on else None,
        None if task.on_parent_failure == "cancel" else task.on_parent_failure,
        task.workflow,
        waiting,
        None if result is None else pack(result),
        None if result is None else now,
        task.keep_result,
    )


def record_from_row(row: Sequence[Any], history: list[AttemptRecord]) -> TaskRecord:
    """Build a TaskRecord from a row selected with RECORD_COLUMNS (extra columns ignored)."""
    result = row[18]
    progress = row[21]
    return TaskRecord(
        id=row[0],
        type=row[1],
        payload=unpack(row[2], object),
        priority=_PRIORITIES[row[3]],
        queue=row[4],
        created_at=row[5],
        run_at=row[6],
        timeout=row[7],
        max_attempts=row[8],
        attempt=row[9],
        idempotency_key=row[10],
        state=_STATES[row[11]],
        updated_at=row[12],
        started_at=row[13],
        finished_at=row[14],
        worker_id=row[15],
        lease_expires_at=row[16],
        cancel_requested=bool(row[17]),
        result=None if result is None else unpack(result, TaskResult),
        history=history,
        trace=row[19],
        keep_result=row[20],
        progress=None if progress is None else unpack(progress, Progress),
        depends_on=() if row[22] is None else tuple(from_json(row[22])),
        on_parent_failure=row[23] or "cancel",
        workflow=row[24],
        waiting=row[25],
    )


def histories(conn: sqlite3.Connection, ids: Iterable[str]) -> dict[str, list[AttemptRecord]]:
    """Load the attempt history of each task, oldest line first (one query)."""
    found: dict[str, list[AttemptRecord]] = {}
    rows = conn.execute(SELECT_HISTORY, (json_list(ids),))
    for task_id, blob in rows:
        found.setdefault(task_id, []).append(unpack(blob, AttemptRecord))
    return found


def records(conn: sqlite3.Connection, rows: Sequence[Row]) -> list[TaskRecord]:
    """Build records from rows (RECORD_COLUMNS first), loading their histories."""
    if not rows:
        return []
    lines = histories(conn, (row[0] for row in rows))
    return [record_from_row(row, lines.get(row[0], [])) for row in rows]


def attempt_line(record: AttemptRecord) -> bytes:
    """Encode one history line."""
    return pack(record)


# Inputs: a JSON array of task ids. Output: (task_id, msgpack AttemptRecord) rows, each task's
# lines in the order they were written. Invariant: attempts is insert-only, so seq is that order.
SELECT_HISTORY = """
SELECT task_id, record FROM attempts
WHERE task_id IN (SELECT value FROM json_each(?1))
ORDER BY task_id, seq
"""

assert len(RECORD_COLUMNS.split(",")) == _RECORD_WIDTH


def limit_from_row(row: Sequence[Any]) -> Limit:
    """A Limit from the first five columns of queries.SELECT_LIMITS."""
    scope, name, max_concurrency, rate, burst = row[:5]
    return Limit(
        scope=LimitScope(scope),
        name=name,
        max_concurrency=None if max_concurrency is None else int(max_concurrency),
        rate=None if rate is None else float(rate),
        burst=None if burst is None else int(burst),
    )
