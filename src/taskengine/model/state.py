"""Task states and the one table of transitions the lifecycle allows."""

from __future__ import annotations

from enum import StrEnum

from taskengine.errors import InvalidTransition


class TaskState(StrEnum):
    """Where a task is in its life; scheduled and retrying tasks are `queued`, due later."""

    BLOCKED = "blocked"  # waits for its parents (depends_on) to succeed; then queued
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


# Every move a task may make, and nothing else. Terminal states leave only by replay.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.BLOCKED: frozenset({TaskState.QUEUED, TaskState.CANCELLED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
    TaskState.RUNNING: frozenset(
        {TaskState.QUEUED, TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED}
    ),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.DEAD: frozenset({TaskState.QUEUED, TaskState.BLOCKED}),
    TaskState.CANCELLED: frozenset({TaskState.QUEUED, TaskState.BLOCKED}),
}

TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED})
REPLAYABLE_STATES = frozenset({TaskState.DEAD, TaskState.CANCELLED})


def can_transition(current: TaskState, target: TaskState) -> bool:
    """Tell whether the lifecycle allows `current` -> `target`."""
    return target in TRANSITIONS[current]


def check_transition(current: TaskState, target: TaskState) -> None:
    """Raise InvalidTransition unless `current` -> `target` is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(f"a {current} task cannot become {target}")
