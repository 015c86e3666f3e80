"""Retention: deletes finished tasks once they are past their time to live."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from taskengine.brokers.base import BrokerBackend
from taskengine.clock import Clock
from taskengine.model import TaskState
from taskengine.runtime.service import PeriodicService

RETENTION = "retention"  # the service, and the name of its leader lease
PURGE_BATCH = 10_000  # tasks deleted per broker call (one write transaction each)


class Retention(PeriodicService):
    """Every `every` seconds, on the one instance that holds the "retention" leader lease:
    delete succeeded and cancelled tasks older than `finished_ttl`, dead ones older than
    `dead_ttl`, and succeeded tasks with a `keep_result` of their own once it ran out."""

    def __init__(
        self,
        broker: BrokerBackend,
        clock: Clock,
        *,
        instance: str,
        every: float,
        finished_ttl: float,
        dead_ttl: float,
    ) -> None:
        super().__init__(RETENTION, every, self.run_once)
        self.broker = broker
        self.clock = clock
        self.instance = instance
        self.finished_ttl = finished_ttl
        self.dead_ttl = dead_ttl

    async def run_once(self) -> int:
        """If this instance leads, delete finished tasks past their retention; return how many."""
        now = self.clock.now()
        if not await self.broker.leader(RETENTION, self.instance, self.interval * 3, now):
            return 0
        finished = [TaskState.SUCCEEDED, TaskState.CANCELLED]
        purged = 0
        for states, keep in ((finished, self.finished_ttl), ([TaskState.DEAD], self.dead_ttl)):
            cutoff = now - keep
            purged += await _until_done(
                functools.partial(self.broker.purge, states, cutoff, PURGE_BATCH)
            )
        kept = functools.partial(self.broker.purge_kept, now, PURGE_BATCH)
        return purged + await _until_done(kept)


async def _until_done(purge: Callable[[], Awaitable[int]]) -> int:
    """Batch after batch until done: one batch a round would cap retention at PURGE_BATCH per
    `every`, far below what a busy engine finishes."""
    purged = 0
    while (batch := await purge()) > 0:
        purged += batch
        if batch < PURGE_BATCH:
            break
    return purged
