"""The records the in-memory broker stores after each operation. The lines and results every
broker writes come from model.records.

The storage form is the TaskRecord itself, with one difference: a stored history is a tuple
(`_kept`), not a list. A record is a struct the cyclic GC does not track, and its lines are too,
so a store of a million finished tasks gives every full collection nothing to walk; a list
would be a million tracked objects. Records leave the store with a list (`shown`, `reserved`),
the type the model declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from msgspec.structs import replace

from taskengine.model import AttemptRecord, Outcome, Progress, Task, TaskRecord, TaskState
from taskengine.model.outcome import ATTEMPT_REFUNDED
from taskengine.model.records import Expiry, cancelled_result, outcome_line
from taskengine.model.state import TERMINAL_STATES


def _kept(lines: Iterable[AttemptRecord]) -> list[AttemptRecord]:
    """A history as the store keeps it: a tuple, untracked by the cyclic GC (see above)."""
    return cast("list[AttemptRecord]", tuple(lines))


NO_HISTORY = _kept(())


def queued(task: Task, now: float) -> TaskRecord:
    """The record of a task just enqueued (model.task.queued_record, field by field)."""
    return TaskRecord(
        id=task.id,
        type=task.type,
        payload=task.payload,
        priority=task.priority,
        queue=task.queue,
        created_at=task.created_at,
        run_at=task.run_at,
        timeout=task.timeout,
        max_attempts=task.max_attempts,
        attempt=task.attempt,
        idempotency_key=task.idempotency_key,
        trace=task.trace,
        keep_result=task.keep_result,
        state=TaskState.QUEUED,
        updated_at=now,
        history=NO_HISTORY,
    )


def shown(record: TaskRecord) -> TaskRecord:
    """The record as it leaves the store: its history a list."""
    return replace(record, history=list(record.history))


def reserved(record: TaskRecord, worker_id: str, now: float, expires_at: float) -> TaskRecord:
    """A queued record claimed by `worker_id` until `expires_at`: its attempt is spent. It
    is handed out as it is stored while it runs, with its history a list."""
    return replace(
        record,
        history=list(record.history),
        state=TaskState.RUNNING,
        attempt=record.attempt + 1,
        updated_at=now,
        started_at=now,
        worker_id=worker_id,
        lease_expires_at=expires_at,
        cancel_requested=False,
    )


def left_running(record: TaskRecord, now: float, line: AttemptRecord | None) -> TaskRecord:
    """The record with its lease cleared (and one history line added)."""
    history = _kept((*record.history, line) if line else record.history)
    return replace(
        record, updated_at=now, lease_expires_at=None, cancel_requested=False, history=history
    )


def settled(record: TaskRecord, outcome: Outcome, now: float) -> TaskRecord:
    """The record after `outcome` (already checked against the current token): its lease
    cleared, one history line added where the outcome leaves one; one copy of the struct."""
    line = outcome_line(outcome, record.attempt)
    state = outcome.state
    changes: dict[str, object] = {
        "state": state,
        "updated_at": now,
        "lease_expires_at": None,
        "cancel_requested": False,
        "history": _kept((*record.history, line) if line else record.history),
    }
    result = outcome.result
    if result is not None:
        changes["result"] = replace(result, attempt=record.attempt)
    if outcome.kind in ATTEMPT_REFUNDED:
        changes["attempt"] = record.attempt - 1
    if outcome.run_at is not None:
        changes["run_at"] = outcome.run_at
    if state in TERMINAL_STATES:
        changes["finished_at"] = now
    return replace(record, **changes)


def expired(record: TaskRecord, expiry: Expiry, now: float) -> TaskRecord:
    """The record after its lease ran out (model.records.expire decided what it becomes)."""
    done = left_running(record, now, expiry.line)
    if expiry.state is TaskState.QUEUED:
        return replace(done, state=TaskState.QUEUED, run_at=now)
    if expiry.result is None:
        return replace(done, state=expiry.state, finished_at=now)
    return replace(done, state=expiry.state, finished_at=now, result=expiry.result)


def cancelled(record: TaskRecord, now: float) -> TaskRecord:
    """A queued record cancelled before it ran; its result says CANCELLED."""
    result = cancelled_result(record.id, now, record.attempt)
    return replace(
        record, state=TaskState.CANCELLED, updated_at=now, finished_at=now, result=result
    )


def replayed(record: TaskRecord, now: float) -> TaskRecord:
    """A dead or cancelled record queued again, due now, with a fresh attempt count."""
    return replace(
        record,
        state=TaskState.QUEUED,
        attempt=0,
        run_at=now,
        updated_at=now,
        finished_at=None,
        worker_id=None,
        cancel_requested=False,
    )


def cancel_requested(record: TaskRecord, now: float) -> TaskRecord:
    """A running record flagged for its worker's next extend."""
    return replace(record, cancel_requested=True, updated_at=now)


def extended(record: TaskRecord, expires_at: float) -> TaskRecord:
    """A running record whose lease now runs until `expires_at`."""
    return replace(record, lease_expires_at=expires_at)


def progressed(record: TaskRecord, progress: Progress) -> TaskRecord:
    """A running record with the progress its run reported last."""
    return replace(record, progress=progress)
