"""Dependencies between tasks: when a task with `depends_on` is queued, and what its parents'
ends do to it. Pure decisions; every broker stores what they say (ADR 0037).

A task with parents is stored `blocked` with `waiting` = how many of them have not settled.
Each parent that ends succeeded (or, with `on_parent_failure="run"`, ends at all) takes one
off `waiting`, in the same broker call as its settle; at zero the task is queued. A parent
that ends dead or cancelled cancels its `"cancel"` dependents at once, with a result naming
it, and so on down the graph. The edges a broker keeps ("waits": parent -> child) are only the
pending ones; an edge is dropped when the parent settles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import NamedTuple

from taskengine.errors import ValidationError
from taskengine.model.result import ResultStatus, TaskResult
from taskengine.model.state import TaskState

MAX_PARENTS = 1000
PARENT_FAILED = "a parent ended"  # the start of the error of a task its parent's end cancelled
FAILED_STATES = frozenset({TaskState.DEAD, TaskState.CANCELLED})


class ParentFailure(StrEnum):
    """What a parent ending dead or cancelled does to its dependents."""

    CANCEL = "cancel"  # the dependent ends cancelled, saying which parent ended how
    RUN = "run"  # the dependent counts the parent as settled and runs anyway


def check_parents(
    task_id: str, depends_on: Sequence[str], on_parent_failure: str
) -> tuple[str, ...]:
    """The parents as stored: distinct strings, not the task itself, at most MAX_PARENTS
    (model.task.new_task checks each is a task id)."""
    if on_parent_failure not in ParentFailure.__members__.values():
        raise ValidationError(
            f"on_parent_failure must be 'cancel' or 'run', got {on_parent_failure!r}"
        )
    if not depends_on:
        return ()
    if isinstance(depends_on, str):
        raise ValidationError("depends_on must be a list of task ids, not one string")
    parents = tuple(depends_on)
    if len(parents) > MAX_PARENTS:
        raise ValidationError(f"depends_on names {len(parents)} tasks; at most {MAX_PARENTS}")
    for parent in parents:
        if not isinstance(parent, str):
            raise ValidationError(f"depends_on: {parent!r} is not a task id")
    if len(set(parents)) != len(parents):
        raise ValidationError("depends_on names a task twice")
    if task_id in parents:
        raise ValidationError("a task cannot depend on itself")
    return parents


class Gate(NamedTuple):
    """Where a task with parents starts (at enqueue or replay)."""

    state: TaskState  # QUEUED, BLOCKED or CANCELLED (a parent already failed)
    waiting: tuple[str, ...]  # the parents not yet settled: the edges to keep
    failed: tuple[str, TaskState] | None  # the parent that failed it, when CANCELLED


def gate(
    depends_on: Sequence[str],
    parent_states: Sequence[TaskState | None],
    on_parent_failure: str,
) -> Gate:
    """Decide a task's state from its parents' states (None: not stored, taken as settled:
    a replayed task whose parent was purged)."""
    waiting: list[str] = []
    for parent, state in zip(depends_on, parent_states, strict=True):
        if state is None or state is TaskState.SUCCEEDED:
            continue
        if state in FAILED_STATES:
            if on_parent_failure == ParentFailure.RUN:
                continue
            return Gate(TaskState.CANCELLED, (), (parent, state))
        waiting.append(parent)
    return Gate(TaskState.BLOCKED if waiting else TaskState.QUEUED, tuple(waiting), None)


def releases(parent_state: TaskState, on_parent_failure: str) -> bool:
    """Whether a parent ending in `parent_state` counts as settled for its dependent (True),
    rather than cancelling it (False)."""
    return parent_state is TaskState.SUCCEEDED or on_parent_failure == ParentFailure.RUN


def blame(failed: Iterable[tuple[str, TaskState]]) -> tuple[str, TaskState]:
    """Of the parents of one dependent that ended dead or cancelled in one call, the one its
    error names: the smallest id, whatever order the call ended them in (every broker)."""
    return min(failed)


def parent_failed_error(parent_id: str, parent_state: TaskState) -> str:
    """The error of a dependent cancelled because `parent_id` ended `parent_state`."""
    return f"{PARENT_FAILED} {parent_state}: {parent_id}"


def parent_failed_result(
    task_id: str, parent_id: str, parent_state: TaskState, now: float, attempt: int = 0
) -> TaskResult:
    """The result of a dependent cancelled because a parent ended dead or cancelled."""
    return TaskResult(
        task_id=task_id,
        status=ResultStatus.CANCELLED,
        completed_at=now,
        error=parent_failed_error(parent_id, parent_state),
        attempt=attempt,
    )


__all__ = [
    "FAILED_STATES",
    "MAX_PARENTS",
    "PARENT_FAILED",
    "Gate",
    "ParentFailure",
    "blame",
    "check_parents",
    "gate",
    "parent_failed_error",
    "parent_failed_result",
    "releases",
]
