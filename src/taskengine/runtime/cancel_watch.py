"""The cancel watch: stops runs here whose cancel was asked on another instance."""

from __future__ import annotations

from taskengine.brokers.base import BrokerBackend
from taskengine.model import LeaseStatus, TaskState
from taskengine.runtime.pool import Pool
from taskengine.runtime.service import PeriodicService

CANCEL_WATCH = "cancel-watch"


class CancelWatch(PeriodicService):
    """Every `every` seconds: read the running tasks' records and interrupt the cancelled ones.

    A cancel from any instance so reaches the run within `every` instead of a heartbeat
    interval. Nothing is read while idle.
    """

    def __init__(self, broker: BrokerBackend, pool: Pool, *, every: float) -> None:
        # Bounded: a read stuck on a half-open connection must not stop the watch for good.
        super().__init__(CANCEL_WATCH, every, self.run_once, deadline=max(every, 1.0))
        self.broker = broker
        self.pool = pool

    async def run_once(self) -> int:
        """Stop running tasks whose cancel was asked elsewhere; return how many."""
        leases = [worker.lease for worker in self.pool.workers.values() if worker.lease is not None]
        if not leases:
            return 0
        records = await self.broker.get([lease.task_id for lease in leases])
        asked = 0
        for lease, record in zip(leases, records, strict=True):
            if record is not None and record.cancel_requested and record.state is TaskState.RUNNING:
                self.pool.lease_status(lease, LeaseStatus.CANCEL_REQUESTED)
                asked += 1
        return asked
