"""Records every broker writes the same way, built once here; each broker stores them.

A cancel asked while a task runs is honoured by whatever settles that run: a run that ends as
retry, snooze or released (the task would be queued again) ends the task cancelled instead,
with a result and a history line that say so. Success and dead outcomes stand: the run
finished. `requeue_expired` honours it the same way (its line says the lease expired).
"""

from __future__ import annotations

from taskengine.model import Outcome, OutcomeKind, ResultStatus, TaskResult

CANCEL_HONOURED = "cancel requested while it ran: honoured"
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


__all__ = ["CANCEL_HONOURED", "REQUEUEING", "honour_cancel"]
