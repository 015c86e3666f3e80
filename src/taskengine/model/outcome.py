"""How a run ends, as the completer hands it to `Broker.settle`."""

from __future__ import annotations

from enum import StrEnum

import msgspec

from taskengine.errors import ValidationError
from taskengine.model.lease import Lease
from taskengine.model.result import ResultStatus, TaskResult
from taskengine.model.state import TaskState


class OutcomeKind(StrEnum):
    """The six ways a leased task is settled."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"  # the attempt failed; run again at run_at
    SNOOZE = "snooze"  # not run (breaker open, rate limited); again at run_at, no attempt burned
    DEAD = "dead"  # attempts exhausted or not retryable: the dead-letter queue
    CANCELLED = "cancelled"
    RELEASED = "released"  # handed back unfinished at shutdown; no attempt burned


# The state each outcome leaves the task in.
OUTCOME_STATE: dict[OutcomeKind, TaskState] = {
    OutcomeKind.SUCCEEDED: TaskState.SUCCEEDED,
    OutcomeKind.RETRY: TaskState.QUEUED,
    OutcomeKind.SNOOZE: TaskState.QUEUED,
    OutcomeKind.DEAD: TaskState.DEAD,
    OutcomeKind.CANCELLED: TaskState.CANCELLED,
    OutcomeKind.RELEASED: TaskState.QUEUED,
}
# Outcomes that give the attempt back (the run did not really happen).
ATTEMPT_REFUNDED = frozenset({OutcomeKind.SNOOZE, OutcomeKind.RELEASED})
# Outcomes that are one line of the attempt history and need a result.
NEEDS_RESULT = frozenset(
    {OutcomeKind.SUCCEEDED, OutcomeKind.RETRY, OutcomeKind.DEAD, OutcomeKind.CANCELLED}
)
NEEDS_RUN_AT = frozenset({OutcomeKind.RETRY, OutcomeKind.SNOOZE})


class Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One settle instruction, fenced by the lease token."""

    kind: OutcomeKind
    task_id: str
    token: str
    result: TaskResult | None = None
    run_at: float | None = None
    # The failed run's formatted traceback, for its history line (model.records.outcome_line).
    traceback: str | None = None

    def __post_init__(self) -> None:
        if self.kind in NEEDS_RESULT and self.result is None:
            raise ValidationError(f"a {self.kind} outcome needs a result")
        if self.kind in NEEDS_RUN_AT and self.run_at is None:
            raise ValidationError(f"a {self.kind} outcome needs run_at")

    @property
    def state(self) -> TaskState:
        """The state this outcome leaves the task in."""
        return OUTCOME_STATE[self.kind]


def succeeded(lease: Lease, result: TaskResult) -> Outcome:
    """The run succeeded with `result`."""
    return Outcome(
        kind=OutcomeKind.SUCCEEDED,
        task_id=lease.task_id,
        token=lease.token,
        result=_checked(result, {ResultStatus.SUCCESS}),
    )


def retry(lease: Lease, result: TaskResult, run_at: float, traceback: str | None = None) -> Outcome:
    """The run failed or timed out; queue it again at `run_at`."""
    return Outcome(
        kind=OutcomeKind.RETRY,
        task_id=lease.task_id,
        token=lease.token,
        result=_checked(result, {ResultStatus.FAILURE, ResultStatus.TIMEOUT}),
        run_at=run_at,
        traceback=traceback,
    )


def snooze(lease: Lease, run_at: float) -> Outcome:
    """The task was not run; try again at `run_at` without burning an attempt."""
    return Outcome(kind=OutcomeKind.SNOOZE, task_id=lease.task_id, token=lease.token, run_at=run_at)


def dead(lease: Lease, result: TaskResult, traceback: str | None = None) -> Outcome:
    """The task failed for good: move it to the dead-letter queue."""
    return Outcome(
        kind=OutcomeKind.DEAD,
        task_id=lease.task_id,
        token=lease.token,
        result=_checked(result, {ResultStatus.FAILURE, ResultStatus.TIMEOUT}),
        traceback=traceback,
    )


def cancelled(lease: Lease, result: TaskResult) -> Outcome:
    """The run was cancelled on request."""
    return Outcome(
        kind=OutcomeKind.CANCELLED,
        task_id=lease.task_id,
        token=lease.token,
        result=_checked(result, {ResultStatus.CANCELLED}),
    )


def released(lease: Lease) -> Outcome:
    """Hand an unfinished task back (shutdown) without burning an attempt."""
    return Outcome(kind=OutcomeKind.RELEASED, task_id=lease.task_id, token=lease.token)


def _checked(result: TaskResult, allowed: set[ResultStatus]) -> TaskResult:
    if result.status not in allowed:
        raise ValidationError(f"result status {result.status} does not fit this outcome")
    return result
