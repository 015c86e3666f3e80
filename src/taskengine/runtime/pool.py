"""The worker pool: N worker coroutines with stable ids taking leases from one buffer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from taskengine.clock import Clock
from taskengine.metrics import Metrics
from taskengine.model import Lease, LeaseStatus, ResultStatus, TaskResult
from taskengine.model import outcome as outcomes
from taskengine.runtime.completer import Completer
from taskengine.runtime.runner import CANCELLED, LEASE_LOST, SHUTDOWN, Runner
from taskengine.runtime.slots import WorkerSlot

log = logging.getLogger("taskengine.runtime")


class Pool:
    """Holds every lease of this instance (buffered or running) until its outcome is handed on."""

    def __init__(
        self,
        runner: Runner,
        completer: Completer,
        clock: Clock,
        *,
        instance: str,
        prefetch: int,
        metrics: Metrics,
    ) -> None:
        self._runner = runner
        self._completer = completer
        self._clock = clock
        self._instance = instance
        self._metrics = metrics
        self.prefetch = prefetch
        self.slots: dict[int, WorkerSlot] = {}
        self.held: dict[str, Lease] = {}
        self._buffer: asyncio.Queue[Lease] = asyncio.Queue()
        self._dropped: set[str] = set()
        self.space_available: Callable[[], None] = _noop  # the fetcher's wake-up

    # -- size -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Workers not retiring."""
        return sum(1 for slot in self.slots.values() if not slot.retiring)

    @property
    def busy(self) -> int:
        """Workers running a task."""
        return sum(1 for slot in self.slots.values() if slot.busy)

    @property
    def waiting(self) -> int:
        """Leases buffered and not started."""
        return self._buffer.qsize()

    def capacity(self) -> int:
        """How many more leases the fetcher may bring."""
        return self.size + self.prefetch - len(self.held)

    def resize(self, size: int) -> None:
        """Start or retire workers until `size` are active; the lowest numbers stay."""
        now = self._clock.now()
        number = 1
        while self.size < size:
            slot = self.slots.get(number)
            if slot is None or (slot.retiring and (slot.task is None or slot.task.cancelling())):
                slot = WorkerSlot(self._instance, number, now)
                self.slots[number] = slot
                slot.task = asyncio.create_task(self._work(slot), name=f"taskengine:{slot.id}")
            elif slot.retiring:
                slot.retiring = False
            number += 1
        for slot in sorted(self.slots.values(), key=lambda s: -s.number):
            if self.size <= size:
                break
            if not slot.retiring:
                self._retire(slot)
        self.space_available()  # a grown pool has room for more leases

    def _retire(self, slot: WorkerSlot) -> None:
        slot.retiring = True
        if not slot.busy and slot.task is not None:
            slot.task.cancel()  # idle: waiting on the buffer, nothing to lose

    # -- leases -----------------------------------------------------------------------------

    def deliver(self, leases: list[Lease]) -> None:
        """Take freshly reserved leases into the buffer."""
        for lease in leases:
            self.held[lease.task_id] = lease
            self._buffer.put_nowait(lease)

    def lease_status(self, lease: Lease, status: LeaseStatus) -> None:
        """React to what the heartbeat learnt: stop lost runs, cancel on request."""
        held = self.held.get(lease.task_id)
        if status is LeaseStatus.HELD or held is None or held.token != lease.token:
            return  # nothing to do, or news of an older lease of a task held here again
        reason = LEASE_LOST if status is LeaseStatus.LOST else CANCELLED
        for slot in self.slots.values():
            if slot.cancel_run(lease.task_id, reason):
                return
        self._drop_buffered(lease, reason)

    def cancel_local(self, task_id: str) -> bool:
        """Cancel a task held here at once (same-process cancel); True if it was held."""
        lease = self.held.get(task_id)
        if lease is None:
            return False
        self.lease_status(lease, LeaseStatus.CANCEL_REQUESTED)
        return True

    def _drop_buffered(self, lease: Lease, reason: str) -> None:
        self._dropped.add(lease.task_id)
        del self.held[lease.task_id]
        if reason == CANCELLED:
            now = self._clock.now()
            result = TaskResult(
                task_id=lease.task_id,
                status=ResultStatus.CANCELLED,
                completed_at=now,
                error="cancelled before it started",
                attempt=lease.record.attempt,
            )
            self._completer.add(outcomes.cancelled(lease, result))
        self.space_available()

    def release_buffered(self) -> int:
        """Hand back every lease not yet started (shutdown); return how many."""
        released = 0
        while not self._buffer.empty():
            lease = self._buffer.get_nowait()
            if lease.task_id in self._dropped:
                self._dropped.discard(lease.task_id)
                continue
            self.held.pop(lease.task_id, None)
            self._completer.add(outcomes.released(lease))
            released += 1
        return released

    def interrupt_running(self) -> int:
        """Interrupt every run (shutdown): each settles as released; return how many."""
        count = 0
        for slot in self.slots.values():
            if slot.lease is not None and slot.cancel_run(slot.lease.task_id, SHUTDOWN):
                count += 1
        return count

    async def stop_workers(self) -> None:
        """Cancel every worker coroutine and wait for them to end."""
        tasks = [slot.task for slot in self.slots.values() if slot.task is not None]
        for slot in self.slots.values():
            slot.retiring = True
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the worker loop --------------------------------------------------------------------

    async def _work(self, slot: WorkerSlot) -> None:
        buffer = self._buffer
        try:
            while not slot.retiring:
                lease = await buffer.get()
                if lease.task_id in self._dropped:
                    self._dropped.discard(lease.task_id)
                    continue
                record = lease.record
                self._metrics.on_started(record.type, self._clock.now() - record.run_at)
                try:
                    outcome = await self._runner.run(slot, lease)
                except Exception:  # a bug, not a task failure: hand the task back
                    log.exception("worker %s failed running %s", slot.id, lease.task_id)
                    outcome = outcomes.released(lease)
                self.held.pop(lease.task_id, None)
                if outcome is not None:
                    self._completer.add(outcome)
                    self._metrics.on_outcome(record.type, outcome, self._clock.now())
                self.space_available()
        finally:
            slot.task = None


def _noop() -> None:
    return None
