"""Records every broker writes the same way, built once here; each broker stores them.

Every history line and every result a broker writes (rather than one a worker sent in an
outcome) is built here: the line an outcome leaves (`outcome_line`), the line of a lease that
ran out (`expire`), the result of a task cancelled before it ran (`cancelled_result`). A
broker only translates them to its storage form.

A cancel asked while a task runs is honoured by whatever settles that run: a run that ends as
retry, snooze or released (the task would be queued again) ends the task cancelled instead,
with a result and a history line that say so. Success and dead outcomes stand: the run
finished. `requeue_expired` honours it the same way (its line says the lease expired).

A lease that runs out on a task's last attempt ends the task dead (`expire` says why),
never queued again: the attempts never pass `max_attempts`.

A task is recorded as created no later than the broker received it (`as_received`), so a
producer whose clock is ahead of the broker's neither delays a task meant to run at once nor
pushes it back in the order (ADR 0006).
"""

from __future__ import annotations

from typing import NamedTuple

from msgspec.structs import replace

from taskengine.model.outcome import NEEDS_RESULT, Outcome, OutcomeKind
from taskengine.model.result import AttemptRecord, ResultStatus, TaskResult
from taskengine.model.state import TaskState
from taskengine.model.task import Task

CANCELLED_BEFORE_RUN = "cancelled before it ran"
CANCEL_HONOURED = "cancel requested while it ran: honoured"
LEASE_EXPIRED = "lease expired"
EXHAUSTED = "attempts exhausted"
# Outcomes that would queue the task again, so a pending cancel request turns them into a cancel.
REQUEUEING = frozenset({OutcomeKind.RETRY, OutcomeKind.SNOOZE, OutcomeKind.RELEASED})


def honour_cancel(outcome: Outcome, now: float) -> Outcome | None:
    """The CANCELLED outcome that replaces `outcome` if its task has a cancel request, or None
    when its kind stands anyway (succeeded, dead, cancelled). The attempt stays counted."""
    if outcome.kind not in REQUEUEING:
        return None
    ran = outcome.result
    error = CANCEL_HONOURED
    if ran is not None and ran.error:
        error = f"{CANCEL_HONOURED} (the run ended: {ran.error})"
    elif ran is None:
        error = f"{CANCEL_HONOURED} (the run was {outcome.kind})"
    result = TaskResult(
        task_id=outcome.task_id,
        status=ResultStatus.CANCELLED,
        duration=0.0 if ran is None else ran.duration,
        worker_id=None if ran is None else ran.worker_id,
        completed_at=now if ran is None else ran.completed_at,
        error=error,
    )
    return Outcome(
        kind=OutcomeKind.CANCELLED,
        task_id=outcome.task_id,
        token=outcome.token,
        result=result,
        traceback=outcome.traceback,
    )


def outcome_line(outcome: Outcome, attempt: int = 0) -> AttemptRecord | None:
    """The history line an applied outcome leaves (None: it leaves none), with the failed
    run's traceback. A broker that only learns the attempt number in its store builds it with
    0 and sets the number there."""
    result = outcome.result
    if outcome.kind not in NEEDS_RESULT or result is None:
        return None
    return AttemptRecord(
        attempt=attempt,
        status=result.status,
        worker_id=result.worker_id,
        finished_at=result.completed_at,
        duration=result.duration,
        error=result.error,
        traceback=outcome.traceback,
    )


def cancelled_result(task_id: str, now: float, attempt: int = 0) -> TaskResult:
    """The result of a queued task cancelled at `now`, before it ran."""
    return TaskResult(
        task_id=task_id,
        status=ResultStatus.CANCELLED,
        completed_at=now,
        error=CANCELLED_BEFORE_RUN,
        attempt=attempt,
    )


def expiry_error(attempt: int, max_attempts: int) -> str:
    """The error of a task whose lease ran out on its last attempt (Redis builds it in Lua)."""
    return f"{EXHAUSTED} ({attempt} of {max_attempts}): {LEASE_EXPIRED}"


class Expiry(NamedTuple):
    """What requeue_expired writes for one running task whose lease ran out."""

    state: TaskState  # QUEUED (due at once), CANCELLED (a cancel was asked) or DEAD (last attempt)
    line: AttemptRecord  # the history line of the lost attempt, which stays counted
    result: TaskResult | None  # the result of a DEAD task; None otherwise (the last one stays)


def expire(
    task_id: str,
    *,
    attempt: int,
    max_attempts: int,
    cancel_requested: bool,
    worker_id: str | None,
    started_at: float | None,
    now: float,
) -> Expiry:
    """What becomes of a task whose lease ran out at `now`: a pending cancel wins; on its last
    attempt it is dead; otherwise it is queued again. Every case leaves a history line."""
    line = AttemptRecord(
        attempt=attempt,
        status=ResultStatus.CANCELLED if cancel_requested else ResultStatus.FAILURE,
        worker_id=worker_id,
        finished_at=now,
        duration=now - (now if started_at is None else started_at),
        error=LEASE_EXPIRED,
    )
    if cancel_requested:
        return Expiry(TaskState.CANCELLED, line, None)
    if attempt < max_attempts:
        return Expiry(TaskState.QUEUED, line, None)
    result = TaskResult(
        task_id=task_id,
        status=ResultStatus.FAILURE,
        duration=line.duration,
        worker_id=worker_id,
        completed_at=now,
        error=expiry_error(attempt, max_attempts),
        attempt=attempt,
    )
    return Expiry(TaskState.DEAD, line, result)


def deleted_at_settle(state: TaskState, keep_result: float | None) -> bool:
    """Whether a task settling into `state` is deleted by the settle (keep_result 0 and
    succeeded: nobody reads its record). Dead and cancelled tasks are always kept."""
    return state is TaskState.SUCCEEDED and keep_result == 0


def kept_until(
    state: TaskState, finished_at: float | None, keep_result: float | None
) -> float | None:
    """When `purge_kept` deletes a finished task with its own retention; None: the global
    retention (`purge`) applies to it."""
    if state is not TaskState.SUCCEEDED or keep_result is None or finished_at is None:
        return None
    return finished_at + keep_result


def as_received(task: Task, now: float) -> Task:
    """The task as a broker whose clock says `now` records it at enqueue: created no later
    than now, and if it was to run at once (run_at not after its creation), due no later
    either. A delayed task keeps its run_at. Without clock skew, the task itself."""
    if task.created_at <= now:
        return task
    run_at = min(task.run_at, now) if task.run_at <= task.created_at else task.run_at
    return replace(task, created_at=now, run_at=run_at)


__all__ = [
    "CANCELLED_BEFORE_RUN",
    "CANCEL_HONOURED",
    "EXHAUSTED",
    "LEASE_EXPIRED",
    "REQUEUEING",
    "Expiry",
    "as_received",
    "cancelled_result",
    "deleted_at_settle",
    "expire",
    "expiry_error",
    "honour_cancel",
    "kept_until",
    "outcome_line",
]
