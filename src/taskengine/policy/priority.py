"""Priority without starvation: a head start in time (ADR 0002).

Due tasks are taken in order of one key, `run_at - HEAD_START[priority]`. A HIGH task jumps
60 s ahead of a NORMAL one due at the same moment, a NORMAL one 60 s ahead of a LOW one. So a
task never waits behind a task of a higher tier that became due more than
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


def order_key(priority: Priority | int, run_at: float) -> float:
    """Return the key due tasks are taken by, lowest first."""
    return run_at - HEAD_START[priority]
