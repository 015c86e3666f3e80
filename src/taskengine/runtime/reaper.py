"""The reaper: queues again the tasks whose lease expired (their instance died or stalled)."""

from __future__ import annotations

import logging

from taskengine.brokers.base import BrokerBackend
from taskengine.clock import Clock
from taskengine.runtime.service import PeriodicService

log = logging.getLogger("taskengine.runtime")
REAPER = "reaper"  # the service, and the name of its leader lease
REQUEUE_BATCH = 1_000  # expired leases requeued per broker call


class Reaper(PeriodicService):
    """Every `every` seconds, on the one instance that holds the "reaper" leader lease:
    requeue every task whose lease expired, batch after batch."""

    def __init__(self, broker: BrokerBackend, clock: Clock, *, instance: str, every: float) -> None:
        super().__init__(REAPER, every, self.run_once)
        self.broker = broker
        self.clock = clock
        self.instance = instance

    async def run_once(self) -> list[str]:
        """If this instance leads, requeue tasks whose lease expired; return their ids."""
        now = self.clock.now()
        if not await self.broker.leader(REAPER, self.instance, self.interval * 3, now):
            return []
        ids: list[str] = []
        while len(batch := await self.broker.requeue_expired(now, REQUEUE_BATCH)) > 0:
            ids += batch  # a crash of many workers expires more leases than one batch holds
            if len(batch) < REQUEUE_BATCH:
                break
        if ids:
            log.warning("requeued %d tasks whose lease expired", len(ids))
        return ids
