"""How far a running task has come, as its handler reports it, and the report a broker stores."""

from __future__ import annotations

import msgspec

MAX_NOTE_CHARS = 200  # a note is a status line, not a log


class Progress(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The last progress a handler reported: `done` of `total` (0: unknown), a short note,
    when (`at`) and in which attempt. Kept on the task record after it settles."""

    done: int
    total: int = 0
    note: str | None = None
    at: float
    attempt: int = 0


class ProgressReport(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One progress write, fenced like a settle by the lease token of the run that made it."""

    task_id: str
    token: str
    progress: Progress


def fraction(progress: Progress) -> float | None:
    """`done / total` within [0, 1], or None when the total is unknown (0)."""
    if progress.total <= 0:
        return None
    return min(max(progress.done / progress.total, 0.0), 1.0)


__all__ = ["MAX_NOTE_CHARS", "Progress", "ProgressReport", "fraction"]
