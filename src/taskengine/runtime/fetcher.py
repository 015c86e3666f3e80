"""The fetcher: reserves leases in batches into the pool's buffer, and sleeps when idle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from taskengine.brokers.base import Broker
from taskengine.clock import Clock
from taskengine.model import Lease

log = logging.getLogger("taskengine.runtime")

# The shortest wait for a rate limit's next token: a bucket a few microseconds short of a
# token must not turn into a burst of reserves.
MIN_LIMITED_WAIT = 0.001


class Fetcher:
    """Keeps the buffer filled up to `capacity()` leases; wakes on the broker's signal."""

    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        *,
        instance: str,
        lease_for: float,
        batch: int,
        queues: Sequence[str] | None,
        idle_wait: float,
        capacity: Callable[[], int],
        deliver: Callable[[list[Lease]], None],
    ) -> None:
        self._broker = broker
        self._clock = clock
        self._instance = instance
        self._lease_for = lease_for
        self._batch = batch
        self._queues = list(queues) if queues else None
        self._idle_wait = idle_wait
        self._capacity = capacity
        self._deliver = deliver
        self._space = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: asyncio.Future[list[Lease]] | None = None
        self.last_full = False  # the last reserve filled its limit: more work is waiting
        self.failures = 0

    async def run_once(self) -> int:
        """Reserve as many leases as there is room for; return how many arrived."""
        free = min(self._capacity(), self._batch)
        if free <= 0:
            return 0
        # Shielded: a stop during the call must not drop leases the broker already granted.
        reserve = self._in_flight = asyncio.ensure_future(
            self._broker.reserve(
                self._instance, free, self._lease_for, self._clock.now(), self._queues
            )
        )
        try:
            leases = await asyncio.shield(reserve)
        except asyncio.CancelledError:
            raise  # even if the reserve is done by now: stop() delivers what it granted
        except BaseException:
            self._in_flight = None
            raise
        self._in_flight = None
        self.last_full = len(leases) == free
        if leases:
            self._deliver(leases)
        return len(leases)

    def space_available(self) -> None:
        """Tell the fetcher a worker has freed a place."""
        self._space.set()

    async def start(self) -> None:
        """Start fetching in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="taskengine:fetcher")

    async def stop(self) -> None:
        """Stop fetching; leases already granted, even by a reserve cut short, go to the pool."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        try:
            leases = await in_flight
        except Exception:
            log.exception("the reserve in flight at stop failed")
            return
        if leases:
            self._deliver(leases)

    def _wait(self) -> float:
        """How long to wait for work: the idle wait, or less when a rate limit held tasks back
        (until its bucket's next token, ADR 0038; a settle that frees a slot wakes us)."""
        # getattr: a broker written before ADR 0038 (no limits) has no limited_for
        held: float | None = getattr(self._broker, "limited_for", None)
        if held is None:
            return self._idle_wait
        return min(self._idle_wait, max(held, MIN_LIMITED_WAIT))

    async def _loop(self) -> None:
        while True:
            if self._capacity() <= 0:
                self._space.clear()
                if self._capacity() <= 0:
                    await self._space.wait()
                continue
            try:
                got = await self.run_once()
                if got == 0 or not self.last_full:
                    # Short of its limit, the broker had nothing more ready (or a limit held
                    # tasks back): another reserve now would come back empty, and a task
                    # landing meanwhile (or the bucket's next token) ends the wait.
                    await self._broker.wait_for_work(self._wait())
                else:
                    await asyncio.sleep(0)  # let the workers start before reserving again
                self.failures = 0
            except Exception:
                self.failures += 1
                delay = min(0.05 * 2**self.failures, 5.0)
                log.exception(
                    "reserve failed (%d in a row); retrying in %.2f s", self.failures, delay
                )
                await asyncio.sleep(delay)
