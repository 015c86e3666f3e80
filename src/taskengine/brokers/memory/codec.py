"""The records the in-memory broker stores after each operation (its storage form is the
TaskRecord itself). The lines and results every broker writes come from model.records."""

from __future__ import annotations

from msgspec.structs import replace

from taskengine.model import AttemptRecord, Outcome, Progress, TaskRecord, TaskState
from taskengine.model.outcome import ATTEMPT_REFUNDED
from taskengine.model.records import Expiry, cancelled_result, outcome_line
from taskengine.model.state import TERMINAL_STATES


def reserved(record: TaskRecord, worker_id: str, now: float, expires_at: float) -> TaskRecord:
    """A queued record claimed by `worker_id` until `expires_at`: its attempt is spent."""
    return replace(
        record,
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
    history = [*record.history, line] if line else record.history
    return replace(
        record, updated_at=now, lease_expires_at=None, cancel_requested=False, history=history
    )


def settled(record: TaskRecord, outcome: Outcome, now: float) -> TaskRecord:
    """The record after `outcome` (already checked against the current token)."""
    result = outcome.result
    done = left_running(record, now, outcome_line(outcome, record.attempt))
    state = outcome.state
    changes: dict[str, object] = {"state": state}
    if result is not None:
        changes["result"] = replace(result, attempt=record.attempt)
    if outcome.kind in ATTEMPT_REFUNDED:
        changes["attempt"] = record.attempt - 1
    if outcome.run_at is not None:
        changes["run_at"] = outcome.run_at
    if state in TERMINAL_STATES:
        changes["finished_at"] = now
    return replace(done, **changes)


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
