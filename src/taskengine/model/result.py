"""What one attempt of a task came to: the spec's TaskResult, and the attempt history entry."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class ResultStatus(StrEnum):
    """How an attempt ended, in the spec's terms."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"


class TaskResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The result of one attempt; the last one is the result users see."""

    task_id: str
    status: ResultStatus
    data: Any = None
    duration: float = 0.0
    worker_id: str | None = None
    completed_at: float
    error: str | None = None
    attempt: int = 0


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One line of a task's attempt history (also written when a lease expired)."""

    attempt: int
    status: ResultStatus
    worker_id: str | None = None
    finished_at: float
    duration: float = 0.0
    error: str | None = None
    # The formatted traceback of a failed attempt (redacted, at most 8 KiB, tail kept), or None.
    traceback: str | None = None
