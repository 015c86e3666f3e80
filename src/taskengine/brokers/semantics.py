"""Records every broker writes the same way, built once here; each broker stores them.

A cancel asked while a task runs is honoured by whatever settles that run: a run that ends as
retry, snooze or released (the task would be queued again) ends the task cancelled instead,
with a result and a history line that say so. Success and dead outcomes stand: the run
finished. `requeue_expired` honours it the same way (its line says the lease expired).

A lease that runs out on a task's last attempt ends the task dead (`expiry_result` says why),
never queued again: the attempts never pass `max_attempts`.

A task is recorded as created no later than the broker received it (`as_received`), so a
producer whose clock is ahead of the broker's neither delays a task meant to run at once nor
pushes it back in the order (ADR 0006).
"""

from __future__ import annotations

from msgspec.structs import replace

from taskengine.model import Outcome, OutcomeKind, ResultStatus, Task, TaskResult

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
        kind=OutcomeKind.CANCELLED, task_id=outcome.task_id, token=outcome.token, result=result
    )


def expiry_error(attempt: int, max_attempts: int) -> str:
    """The error of a task whose lease ran out on its last attempt (Redis builds it in Lua)."""
    return f"{EXHAUSTED} ({attempt} of {max_attempts}): {LEASE_EXPIRED}"


def expiry_result(
    task_id: str,
    *,
    attempt: int,
    max_attempts: int,
    worker_id: str | None,
    now: float,
    duration: float,
) -> TaskResult:
    """The result of a task whose lease ran out on its last attempt: it is dead."""
    return TaskResult(
        task_id=task_id,
        status=ResultStatus.FAILURE,
        duration=duration,
        worker_id=worker_id,
        completed_at=now,
        error=expiry_error(attempt, max_attempts),
        attempt=attempt,
    )


def as_received(task: Task, now: float) -> Task:
    """The task as a broker whose clock says `now` records it at enqueue: created no later
    than now, and if it was to run at once (run_at not after its creation), due no later
    either. A delayed task keeps its run_at. Without clock skew, the task itself."""
    if task.created_at <= now:
        return task
    run_at = min(task.run_at, now) if task.run_at <= task.created_at else task.run_at
    return replace(task, created_at=now, run_at=run_at)


__all__ = [
    "CANCEL_HONOURED",
    "EXHAUSTED",
    "LEASE_EXPIRED",
    "REQUEUEING",
    "as_received",
    "expiry_error",
    "expiry_result",
    "honour_cancel",
]
