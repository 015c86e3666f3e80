"""Per-worker state: what each worker does, for the heartbeat, the registry and the dashboard."""

from __future__ import annotations

import asyncio

from taskengine.model import Lease
from taskengine.model.worker import WorkerInfo
from taskengine.registry import TaskContext

# Why a run was interrupted from outside (Worker.cancel_run) and what is settled then.
CANCELLED = "cancelled"  # cancel requested: settle CANCELLED
LEASE_LOST = "lease_lost"  # another worker may have it now: settle nothing
SHUTDOWN = "shutdown"  # the pool is stopping: hand it back, no attempt burned
TIMED_OUT = "timed_out"  # past its timeout: a failure like any other (retry or dead)
# Which interruption decides how a run ends when several arrive.
_RANK = {SHUTDOWN: 0, TIMED_OUT: 1, CANCELLED: 2, LEASE_LOST: 3}


class Worker:
    """One worker of the pool: a stable id, its current run and its counters."""

    __slots__ = (
        "busy_seconds",
        "busy_since",
        "cancel_reason",
        "cancels_sent",
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
        self.cancels_sent = 0  # cancellations sent to this run, for the runner to take back
        self.retiring = False

    @property
    def busy(self) -> bool:
        """True while a task runs on this worker."""
        return self.lease is not None

    @property
    def active(self) -> bool:
        """True while its coroutine runs (False once retired, even if cancelled before it began)."""
        return self.task is not None and not self.task.done()

    def begin(self, lease: Lease, now: float) -> None:
        """Mark the start of a run."""
        self.lease = lease
        self.busy_since = now
        self.cancel_reason = None
        self.cancels_sent = 0

    def end(self, now: float) -> None:
        """Mark the end of a run."""
        self.lease = None
        self.context = None
        self.busy_seconds += now - self.busy_since
        self.processed += 1

    def cancel_run(self, token: str, reason: str) -> bool:
        """Interrupt the current run if it holds the lease `token`; True if it does.

        The reason that matters most wins (a lost lease over a cancel over a timeout over a
        shutdown), and every call cancels again: a handler that swallowed one cancellation
        still gets the next.
        """
        if self.lease is None or self.lease.token != token or self.task is None:
            return False
        if self.cancel_reason is None or _RANK[reason] > _RANK[self.cancel_reason]:
            self.cancel_reason = reason
        if self.task.cancel():
            self.cancels_sent += 1
        return True

    def info(
        self,
        instance: str,
        host: str,
        pid: int,
        now: float,
        types: tuple[str, ...] = (),
        *,
        draining: bool = False,
    ) -> WorkerInfo:
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
            types=types,
            draining=draining,
        )
