"""The autoscaler: grows the pool while work waits, shrinks it after idle rounds."""

from __future__ import annotations

import logging

from taskengine.policy.autoscale import PoolSample, desired_size
from taskengine.runtime.fetcher import Fetcher
from taskengine.runtime.pool import Pool
from taskengine.runtime.service import PeriodicService

log = logging.getLogger("taskengine.runtime")
AUTOSCALER = "autoscaler"


class Autoscaler(PeriodicService):
    """Every `every` seconds: sample the pool and resize it as `policy.autoscale` decides,
    between `low` and `high` workers."""

    def __init__(
        self, pool: Pool, fetcher: Fetcher, *, low: int, high: int, every: float = 1.0
    ) -> None:
        super().__init__(AUTOSCALER, every, self.run_once)
        self.pool = pool
        self.fetcher = fetcher
        self.low = low
        self.high = high
        self._idle_rounds = 0

    async def run_once(self) -> int:
        """Resize the pool by backlog; return the new size."""
        pool = self.pool
        busy = pool.busy
        self._idle_rounds = self._idle_rounds + 1 if busy * 2 <= pool.size else 0
        sample = PoolSample(
            size=pool.size,
            busy=busy,
            waiting=pool.waiting,
            saturated=self.fetcher.last_full,
            idle_rounds=self._idle_rounds,
        )
        size = desired_size(sample, self.low, self.high)
        if size != pool.size:
            log.info("pool resized", extra={"from": pool.size, "to": size})
            pool.resize(size)
            if size < sample.size:
                self._idle_rounds = 0
        return size
