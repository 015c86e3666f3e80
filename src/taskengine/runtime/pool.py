"""The worker pool: N worker coroutines with stable ids taking leases from one buffer."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from taskengine.clock import Clock
from taskengine.metrics import Metrics
from taskengine.model import Lease, LeaseStatus, Outcome, ResultStatus, TaskResult
from taskengine.model import outcome as outcomes
from taskengine.model.priority import due_at, order_key
from taskengine.runtime.completer import Completer
from taskengine.runtime.runner import Runner
from taskengine.runtime.workers import CANCELLED, LEASE_LOST, SHUTDOWN, Worker

log = logging.getLogger("taskengine.runtime")


PREFETCH_WAIT = 0.01  # adaptive prefetch: a buffered lease waits about this long to start
_MEAN_WEIGHT = 0.1  # weight of the newest run in the mean run time


class Pool:
    """Holds every lease of this instance (buffered or running) until its outcome is handed on.

    Leases are keyed by their token, never by task id: when the broker hands this instance a
    task again (its earlier lease expired), the older lease's run is stopped as lost and only
    the newest lease is extended and settled. The buffer is ordered by the broker's priority
    key, and by default holds only as many leases as start within `PREFETCH_WAIT` at the
    measured run time, so a HIGH task is not stuck behind long LOW tasks buffered here.
    """

    def __init__(
        self,
        runner: Runner,
        completer: Completer,
        clock: Clock,
        *,
        instance: str,
        prefetch: int,
        metrics: Metrics,
        adaptive: bool = False,
    ) -> None:
        self._runner = runner
        self._completer = completer
        self._clock = clock
        self._instance = instance
        self._metrics = metrics
        self.prefetch = prefetch
        self.adaptive = adaptive  # False: always buffer `prefetch` (as configured)
        self.mean_run: float | None = None  # seconds, over recent runs; None before the first
        self.workers: dict[int, Worker] = {}
        self.held: dict[str, Lease] = {}  # by lease token
        self._newest: dict[str, str] = {}  # task id -> token of its newest lease held here
        self._buffer: asyncio.PriorityQueue[tuple[float, int, Lease]] = asyncio.PriorityQueue()
        self._arrivals = 0
        self._dropped: set[str] = set()  # tokens of buffered leases not to start
        self.space_available: Callable[[], None] = _noop  # the fetcher's wake-up

    # -- size -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Workers not retiring."""
        return sum(1 for worker in self.workers.values() if not worker.retiring)

    @property
    def busy(self) -> int:
        """Workers running a task."""
        return sum(1 for worker in self.workers.values() if worker.busy)

    @property
    def waiting(self) -> int:
        """Leases buffered and not started."""
        return self._buffer.qsize()

    def prefetch_now(self) -> int:
        """How many leases may wait in the buffer beyond one per worker, now."""
        if not self.adaptive:
            return self.prefetch
        mean = self.mean_run
        if mean is None:
            return 0  # nothing measured yet: take only what the workers start at once
        if mean <= 0:
            return self.prefetch
        return min(self.prefetch, int(PREFETCH_WAIT * self.size / mean))

    def capacity(self) -> int:
        """How many more leases the fetcher may bring."""
        return self.size + self.prefetch_now() - len(self.held)

    def resize(self, size: int) -> None:
        """Start or retire workers until `size` are active; the lowest numbers stay."""
        now = self._clock.now()
        number = 1
        while self.size < size:
            worker = self.workers.get(number)
            if worker is None or (
                worker.retiring and (worker.task is None or worker.task.cancelling())
            ):
                worker = Worker(self._instance, number, now)
                self.workers[number] = worker
                worker.task = asyncio.create_task(
                    self._work(worker), name=f"taskengine:{worker.id}"
                )
            elif worker.retiring:
                worker.retiring = False
            number += 1
        for worker in sorted(self.workers.values(), key=lambda s: -s.number):
            if self.size <= size:
                break
            if not worker.retiring:
                self._retire(worker)
        self.space_available()  # a grown pool has room for more leases

    def _retire(self, worker: Worker) -> None:
        worker.retiring = True
        if not worker.busy and worker.task is not None:
            worker.task.cancel()  # idle: waiting on the buffer, nothing to lose

    # -- leases -----------------------------------------------------------------------------

    def deliver(self, leases: list[Lease]) -> None:
        """Take freshly reserved leases into the buffer, in the broker's priority order.

        A task already held here under an older token was given out again because that lease
        expired: the older lease is lost, and its run is stopped.
        """
        for lease in leases:
            older = self._newest.get(lease.task_id)
            if older is not None:
                stale = self.held.get(older)
                if stale is not None:
                    self.lease_status(stale, LeaseStatus.LOST)
            self._newest[lease.task_id] = lease.token
            self.held[lease.token] = lease
            self._arrivals += 1
            self._buffer.put_nowait((buffer_key(lease), self._arrivals, lease))

    def lease_status(self, lease: Lease, status: LeaseStatus) -> None:
        """React to what the heartbeat learnt: stop lost runs, cancel on request."""
        if status is LeaseStatus.HELD or lease.token not in self.held:
            return  # nothing to do, or the lease's run has already ended
        reason = LEASE_LOST if status is LeaseStatus.LOST else CANCELLED
        for worker in self.workers.values():
            if worker.cancel_run(lease.token, reason):
                return
        self._drop_buffered(lease, reason)

    def holds(self, task_id: str) -> bool:
        """True if a lease of `task_id` is held here (buffered or running)."""
        return task_id in self._newest

    def cancel_local(self, task_id: str) -> bool:
        """Cancel a task held here at once (same-process cancel); True if it was held."""
        lease = self.held.get(self._newest.get(task_id, ""))
        if lease is None:
            return False
        self.lease_status(lease, LeaseStatus.CANCEL_REQUESTED)
        return True

    def _drop_buffered(self, lease: Lease, reason: str) -> None:
        self._dropped.add(lease.token)
        outcome = None
        if reason == CANCELLED:
            now = self._clock.now()
            result = TaskResult(
                task_id=lease.task_id,
                status=ResultStatus.CANCELLED,
                completed_at=now,
                error="cancelled before it started",
                attempt=lease.record.attempt,
            )
            outcome = outcomes.cancelled(lease, result)
        self._finish(lease, outcome)

    def _finish(self, lease: Lease, outcome: Outcome | None) -> None:
        """Let go of `lease` and hand its outcome on; a lease already let go is ignored."""
        if self.held.pop(lease.token, None) is None:
            return  # handed back already (a run abandoned at shutdown that ended after all)
        if self._newest.get(lease.task_id) == lease.token:
            del self._newest[lease.task_id]
        if outcome is not None:
            self._completer.add(outcome)
            record = lease.record
            self._metrics.on_outcome(record.type, outcome, self._clock.now(), record.queue)
        self.space_available()

    def release_buffered(self) -> int:
        """Hand back every lease not yet started (shutdown); return how many."""
        released = 0
        while not self._buffer.empty():
            _, _, lease = self._buffer.get_nowait()
            if lease.token in self._dropped:
                self._dropped.discard(lease.token)
                continue
            self._finish(lease, outcomes.released(lease))
            released += 1
        return released

    def interrupt_running(self) -> int:
        """Interrupt every run (shutdown): each settles as released; return how many."""
        count = 0
        for worker in self.workers.values():
            if worker.lease is not None and worker.cancel_run(worker.lease.token, SHUTDOWN):
                count += 1
        return count

    async def stop_workers(self, timeout: float = 1.0) -> list[str]:
        """Stop every worker coroutine, waiting up to `timeout` seconds for them; hand back
        the tasks of runs that ignore every cancellation and return their ids."""
        for worker in self.workers.values():
            worker.retiring = True
            if worker.lease is not None:
                worker.cancel_run(worker.lease.token, SHUTDOWN)
            elif worker.task is not None:
                worker.task.cancel()
        tasks = [worker.task for worker in self.workers.values() if worker.task is not None]
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        abandoned: list[str] = []
        for worker in self.workers.values():
            lease = worker.lease
            if worker.task in pending and lease is not None:
                abandoned.append(lease.task_id)
                self._finish(lease, outcomes.released(lease))
        if abandoned:
            log.error("runs ignored every cancellation; handed back: %s", abandoned)
        return abandoned

    # -- the worker loop --------------------------------------------------------------------

    async def _work(self, worker: Worker) -> None:
        buffer = self._buffer
        clock = self._clock
        try:
            while not worker.retiring:
                _, _, lease = await buffer.get()
                if lease.token in self._dropped:
                    self._dropped.discard(lease.token)
                    continue
                record = lease.record
                started = clock.now()
                # Waited since it could first run: a run_at in the past is no wait.
                waited = started - due_at(record.run_at, record.created_at)
                self._metrics.on_started(record.type, waited)
                try:
                    outcome = await self._runner.run(worker, lease)
                except asyncio.CancelledError:  # the worker itself was cancelled mid-run
                    self._finish(lease, outcomes.released(lease))
                    raise
                ran = clock.now() - started
                mean = self.mean_run
                self.mean_run = ran if mean is None else mean + _MEAN_WEIGHT * (ran - mean)
                self._finish(lease, outcome)
                task = worker.task
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError  # a cancellation of the worker met a run's
        finally:
            worker.task = None


def buffer_key(lease: Lease) -> float:
    """The broker's priority key of a lease, so the buffer hands out leases in its order."""
    record = lease.record
    return order_key(record.priority, due_at(record.run_at, record.created_at))


def _noop() -> None:
    return None
