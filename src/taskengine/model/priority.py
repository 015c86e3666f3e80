"""Priority without starvation: a head start in time (ADR 0002, ADR 0006).

The order key is data: every broker stores it with the task and recomputes it whenever run_at
changes, so it lives beside the task, not among the decisions of `policy/`.

Due tasks are taken in order of one key, `due_at - HEAD_START[priority]`, where `due_at` is
the later of the task's run_at and its creation: a run_at in the past (even 0) gains nothing
over a task created at the same moment, and a task is never due before it was created. A HIGH
task jumps 60 s ahead of a NORMAL one due at the same moment, a NORMAL one 60 s ahead of a LOW
one. So a task never waits behind a task of a higher tier that became due more than
`STARVATION_BOUND` seconds after it: under any stream of fresh HIGH tasks, a LOW task due at
t is taken before every HIGH task due after t + 120 s.
"""

from __future__ import annotations

from taskengine.model.task import Priority

HEAD_START: dict[int, float] = {  # Priority members; a plain 0-2 finds them too
    Priority.HIGH: 60.0,
    Priority.NORMAL: 0.0,
    Priority.LOW: -60.0,
}
STARVATION_BOUND = HEAD_START[Priority.HIGH] - HEAD_START[Priority.LOW]


def due_at(run_at: float, created_at: float) -> float:
    """Return when a task becomes due: its run_at, but never before it was created."""
    return run_at if run_at > created_at else created_at


def order_key(priority: Priority | int, due: float) -> float:
    """Return the key a task due at `due` (see `due_at`) is taken by, lowest first."""
    return due - HEAD_START[priority]
