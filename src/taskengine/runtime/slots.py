"""Per-worker state: what each worker does, for the heartbeat, the registry and the dashboard."""

from __future__ import annotations

import asyncio

from taskengine.model import Lease
from taskengine.model.worker import WorkerInfo
from taskengine.registry import TaskContext


class WorkerSlot:
    """One worker of the pool: a stable id, its current run and its counters."""

    __slots__ = (
        "busy_seconds",
        "busy_since",
        "cancel_reason",
        "context",
        "id",
        "lease",
        "number",
        "processed",
        "retiring",
        "started_at",
        "task",
    )

    def __init__(self, instance: str, number: int, now: float) -> None:
        self.id = f"{instance}/w{number}"
        self.number = number
        self.started_at = now
        self.task: asyncio.Task[None] | None = None
        self.lease: Lease | None = None
        self.context: TaskContext | None = None
        self.busy_since = 0.0
        self.busy_seconds = 0.0
        self.processed = 0
        self.cancel_reason: str | None = None
        self.retiring = False

    @property
    def busy(self) -> bool:
        """True while a task runs on this worker."""
        return self.lease is not None

    def begin(self, lease: Lease, now: float) -> None:
        """Mark the start of a run."""
        self.lease = lease
        self.busy_since = now
        self.cancel_reason = None

    def end(self, now: float) -> None:
        """Mark the end of a run."""
        self.lease = None
        self.context = None
        self.busy_seconds += now - self.busy_since
        self.processed += 1

    def cancel_run(self, task_id: str, reason: str) -> bool:
        """Interrupt the current run if it is `task_id`; `reason` says what the runner reports."""
        if self.lease is None or self.lease.task_id != task_id or self.task is None:
            return False
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.task.cancel()
        return True

    def info(self, instance: str, host: str, pid: int, now: float) -> WorkerInfo:
        """The registry entry of this worker as of `now`."""
        busy = self.busy_seconds + (now - self.busy_since if self.lease is not None else 0.0)
        state = "busy" if self.lease is not None else "idle"
        if self.retiring:
            state = "stopping"
        return WorkerInfo(
            id=self.id,
            instance=instance,
            host=host,
            pid=pid,
            state=state,
            current_task=self.lease.task_id if self.lease is not None else None,
            processed=self.processed,
            busy_seconds=busy,
            started_at=self.started_at,
            last_seen=now,
        )
