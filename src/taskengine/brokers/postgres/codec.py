"""Rows of the PostgreSQL store to and from model structs (MessagePack via model.serializer).

Batches go to SQL as aligned arrays, one per column. The payload, the last result and each
history line are MessagePack; their attempt numbers live in integer columns, because a settle
is applied in SQL and only the row knows the attempt then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import msgspec
from msgspec.structs import replace

from taskengine.model import (
    AttemptRecord,
    Outcome,
    Priority,
    Progress,
    ProgressReport,
    Task,
    TaskRecord,
    TaskResult,
    TaskState,
)
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.outcome import ATTEMPT_REFUNDED
from taskengine.model.priority import HEAD_START, due_at, order_key
from taskengine.model.records import (
    cancelled_result,
    expire,
    honour_cancel,
    outcome_line,
)
from taskengine.model.serializer import pack
from taskengine.model.worker import WorkerInfo

# The columns a TaskRecord is built from (tasks aliased `t`), read by name in `record_from_row`.
RECORD_COLUMNS = ", ".join(
    f"t.{name}"
    for name in (
        "id",
        "type",
        "payload",
        "priority",
        "queue",
        "created_at",
        "run_at",
        "timeout",
        "max_attempts",
        "attempt",
        "idempotency_key",
        "state",
        "updated_at",
        "started_at",
        "finished_at",
        "worker_id",
        "lease_expires_at",
        "cancel_requested",
        "result",
        "result_attempt",
        "history_lines",
        "history_attempts",
        "trace",
        "depends_on",
        "on_parent_failure",
        "workflow",
        "waiting",
        "keep_result",
        "progress",
    )
)
# HEAD_START by priority, 1-based as SQL arrays are: SQL reads it at index `priority + 1`.
HEADS = [HEAD_START[Priority(p)] for p in range(len(Priority))]

_payload = msgspec.msgpack.Decoder()
_result = msgspec.msgpack.Decoder(TaskResult)
_line = msgspec.msgpack.Decoder(AttemptRecord)
_worker = msgspec.msgpack.Decoder(WorkerInfo)
_progress = msgspec.msgpack.Decoder(Progress)


class Row(Protocol):
    """What asyncpg returns for a row: columns by name or position."""

    def __getitem__(self, key: str | int) -> Any: ...


def task_arrays(tasks: Sequence[Task], gates: Sequence[Gated] | None = None) -> list[list[Any]]:
    """The twenty aligned arrays of queries.INSERT_TASKS ($1-$13, then $15-$21); `gates`
    (default: every task queued) say where tasks with parents start (model.deps.gate)."""
    if gates is None:
        gates = [_QUEUED] * len(tasks)
    return [
        [t.id for t in tasks],
        [t.type for t in tasks],
        [pack(t.payload) for t in tasks],
        [int(t.priority) for t in tasks],
        [t.queue for t in tasks],
        [float(t.created_at) for t in tasks],
        [float(t.run_at) for t in tasks],
        [order_key(t.priority, due_at(float(t.run_at), float(t.created_at))) for t in tasks],
        [float(t.timeout) for t in tasks],
        [t.max_attempts for t in tasks],
        [t.attempt for t in tasks],
        [t.idempotency_key for t in tasks],
        [t.trace for t in tasks],
        [g.state.value for g in gates],
        [",".join(t.depends_on) if t.depends_on else None for t in tasks],
        [None if t.on_parent_failure == "cancel" else t.on_parent_failure for t in tasks],
        [t.workflow for t in tasks],
        [g.waiting for g in gates],
        [None if g.result is None else pack(g.result) for g in gates],
        [None if t.keep_result is None else float(t.keep_result) for t in tasks],
    ]


class Gated(NamedTuple):
    """Where a new task starts: its state, how many parents it waits on, and the result of
    one cancelled at once because a parent failed."""

    state: TaskState
    waiting: int = 0
    result: TaskResult | None = None


_QUEUED = Gated(TaskState.QUEUED)


def settle_arrays(outcomes: Sequence[Outcome], now: float) -> list[list[Any]]:
    """The nine aligned arrays of queries.SETTLE (the row sets the attempt numbers): each
    outcome's own seven ($1-$7), then the result and line of the cancel that replaces it if
    its task has a cancel request ($10, $11; NULL: the outcome stands)."""
    honoured = [honour_cancel(o, now) for o in outcomes]
    return [
        [o.task_id for o in outcomes],
        [o.token for o in outcomes],
        [o.state.value for o in outcomes],
        [o.kind in ATTEMPT_REFUNDED for o in outcomes],
        [None if o.run_at is None else float(o.run_at) for o in outcomes],
        [None if o.result is None else pack(o.result) for o in outcomes],
        [_outcome_line(o) for o in outcomes],
        [None if h is None or h.result is None else pack(h.result) for h in honoured],
        [None if h is None else _outcome_line(h) for h in honoured],
    ]


def _outcome_line(outcome: Outcome) -> bytes | None:
    """The history line of an outcome, without its attempt number (or None: no line)."""
    line = outcome_line(outcome)
    return None if line is None else pack(line)


def expiry_arrays(rows: Sequence[Row], now: float) -> tuple[list[bytes], list[bytes | None]]:
    """The aligned history lines and dead results ($3, $7) of queries.REQUEUE_APPLY for rows
    of queries.REQUEUE_SELECT whose lease ran out at `now` (model.records.expire)."""
    expiries = [
        expire(
            row["id"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            cancel_requested=row["cancel_requested"],
            worker_id=row["worker_id"],
            started_at=row["started_at"],
            now=now,
        )
        for row in rows
    ]
    return (
        [pack(e.line) for e in expiries],
        [None if e.result is None else pack(e.result) for e in expiries],
    )


def cancelled_result_blob(task_id: str, now: float) -> bytes:
    """The result of a task cancelled before it ran (its attempt comes from the row)."""
    return pack(cancelled_result(task_id, now))


def record_from_row(row: Row) -> TaskRecord:
    """Build a TaskRecord from a row selected with RECORD_COLUMNS (extra columns ignored)."""
    blob = row["result"]
    result = None if blob is None else replace(_result.decode(blob), attempt=row["result_attempt"])
    history = [
        replace(_line.decode(line), attempt=attempt)
        for line, attempt in zip(row["history_lines"], row["history_attempts"], strict=True)
    ]
    return TaskRecord(
        id=row["id"],
        type=row["type"],
        payload=_payload.decode(row["payload"]),
        priority=Priority(row["priority"]),
        queue=row["queue"],
        created_at=row["created_at"],
        run_at=row["run_at"],
        timeout=row["timeout"],
        max_attempts=row["max_attempts"],
        attempt=row["attempt"],
        idempotency_key=row["idempotency_key"],
        state=TaskState(row["state"]),
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker_id=row["worker_id"],
        lease_expires_at=row["lease_expires_at"],
        cancel_requested=row["cancel_requested"],
        result=result,
        history=history,
        trace=row["trace"],
        depends_on=tuple(row["depends_on"] or ()),
        on_parent_failure=row["on_parent_failure"] or "cancel",
        workflow=row["workflow"],
        waiting=row["waiting"],
        keep_result=row["keep_result"],
        progress=None if row["progress"] is None else _progress.decode(row["progress"]),
    )


def progress_arrays(reports: Sequence[ProgressReport]) -> list[list[Any]]:
    """The aligned arrays of queries.PROGRESS; a later report of the same lease wins."""
    latest = {(r.task_id, r.token): r for r in reports}
    return [
        [r.task_id for r in latest.values()],
        [r.token for r in latest.values()],
        [pack(r.progress) for r in latest.values()],
    ]


def worker_arrays(workers: Sequence[WorkerInfo]) -> list[list[Any]]:
    """The aligned arrays of queries.RECORD_WORKERS; a later duplicate id wins."""
    latest = {w.id: w for w in workers}
    return [
        list(latest),
        [float(w.last_seen) for w in latest.values()],
        [pack(w) for w in latest.values()],
    ]


def decode_worker(blob: bytes) -> WorkerInfo:
    """A WorkerInfo stored by record_workers."""
    return _worker.decode(blob)


def limit_from_row(row: Any) -> Limit:
    """A Limit from a row of queries.LIMITS or LOCK_LIMITS."""
    return Limit(
        scope=LimitScope(row["scope"]),
        name=row["name"],
        max_concurrency=row["max_concurrency"],
        rate=row["rate"],
        burst=row["burst"],
    )
