"""Once a second: what the engine did (a history Point), queue depth, worker utilisation, lag.

One broker `counts()` per second serves the chart, the snapshot and the live feed, so their
cost does not grow with the number of dashboards open.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskengine.brokers import BrokerBackend
from taskengine.brokers.base import CountRow
from taskengine.clock import Clock
from taskengine.metrics.collector import Metrics
from taskengine.model import Priority, TaskState
from taskengine.process_stats import process_stats
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.history import History, Point
from taskengine.telemetry.rates import QueueRates

log = logging.getLogger("taskengine.metrics")

StatusAt = Callable[[float], EngineStatus | None]  # the engine's status at a time; None: no pool

EFFICIENCY_WINDOW = 60  # seconds of samples the efficiency score looks at
SAVE_EVERY = 10  # points between saves of the history file


class Sampler:
    """Builds one Point per run; keeps the history, the latest counts and the efficiency score."""

    def __init__(
        self,
        metrics: Metrics,
        broker: BrokerBackend,
        clock: Clock,
        *,
        status: StatusAt | None = None,
        history: History | None = None,
        history_path: Path | None = None,
        with_counts: bool = True,
    ) -> None:
        self.metrics = metrics
        self.broker = broker
        self.clock = clock
        self.status = status
        self.history = history or History()
        self.history_path = history_path
        self.with_counts = with_counts  # False: a worker process, whose points need no depth
        self.driven_by_feed = False  # True: the live feed runs this sampler, not the engine
        self.counts: list[CountRow] = []
        self.process: dict[str, Any] = {}  # the last process_stats(): CPU % is since the one before
        self.loop_lag = 0.0
        self.queue_rates = QueueRates()  # the per-queue totals of the last minute
        self._busy_before: dict[str, float] = {}
        self._sampled_at: float | None = None
        self._due: float | None = None  # loop time this run should have started
        self._interval = 1.0
        self._worker_seconds: deque[tuple[float, float]] = deque(maxlen=EFFICIENCY_WINDOW)
        self._unsaved = 0

    def load_history(self) -> int:
        """Take the points a previous run saved; return how many (blocking, at start-up)."""
        if self.history_path is None:
            return 0
        return self.history.load(self.history_path, self.clock.now())

    async def run_once(self) -> Point:
        """Sample now; the point describes the last full second."""
        loop = asyncio.get_running_loop()
        if self._due is not None:
            self.loop_lag = max(0.0, loop.time() - self._due)
        try:
            return await self._sample()
        finally:
            self._due = loop.time() + self._interval

    def expect_next_in(self, interval: float) -> None:
        """Tell the lag meter how long the caller waits between runs."""
        self._interval = interval

    async def _sample(self) -> Point:
        rows = await self.broker.counts() if self.with_counts else []
        now = self.clock.now()
        self.counts = rows
        second = int(now) - 1
        ok, failed = self.metrics.throughput.at(second)
        depth = {p.name: 0 for p in Priority}
        running = 0
        for row in rows:
            if row.state is TaskState.QUEUED:
                depth[row.priority.name] += row.count
            elif row.state is TaskState.RUNNING:
                running += row.count
        status = self.status(now) if self.status is not None else None
        if status is not None:  # leased but still in this instance's buffer: not running
            running = max(running - status.buffered, 0)
        stats = self.process = process_stats()
        point = Point(
            t=float(second),
            ok=ok,
            failed=failed,
            depth=depth,
            running=running,
            busy=self._busy_fractions(now, status),
            rss_bytes=stats["rss_bytes"],
            cpu_percent=stats["cpu_percent"],
            loop_lag_seconds=round(self.loop_lag, 6),
        )
        self.history.add(point)
        self.queue_rates.observe(now, self.metrics.queue_finished())
        self._unsaved += 1
        if self.history_path is not None and self._unsaved >= SAVE_EVERY:
            await self.save()
        return point

    async def save(self) -> None:
        """Write the history file off the event loop."""
        if self.history_path is None:
            return
        self._unsaved = 0
        try:
            await asyncio.to_thread(self.history.save, self.history_path)
        except OSError as exc:
            log.warning("could not save the metrics history: %s", exc)

    def rates(self, now: float) -> dict[str, float]:
        """This process's runs per second per queue over the last minute."""
        return self.queue_rates.rates(now, self.metrics.queue_finished())

    def efficiency(self) -> float:
        """Share of worker time spent busy while tasks waited in the buffer (1.0: none wasted)."""
        busy = sum(b for b, _ in self._worker_seconds)
        wasted = sum(w for _, w in self._worker_seconds)
        return busy / (busy + wasted) if busy + wasted else 1.0

    def _busy_fractions(self, now: float, status: EngineStatus | None) -> dict[str, float]:
        if status is None:
            return {}
        elapsed = now - self._sampled_at if self._sampled_at is not None else 0.0
        self._sampled_at = now
        fractions: dict[str, float] = {}
        before = self._busy_before
        seen: dict[str, float] = {}
        for worker in status.workers:
            info = worker.info
            total = info.busy_seconds  # up to `now`, the current run included
            seen[info.id] = total
            if elapsed > 0 and info.id in before:
                fraction = (total - before[info.id]) / elapsed
            else:
                fraction = 1.0 if info.current_task is not None else 0.0
            fractions[info.id] = round(min(max(fraction, 0.0), 1.0), 3)
        self._busy_before = seen
        busy = sum(fractions.values())
        waiting = status.buffered > 0
        self._worker_seconds.append((busy, (len(fractions) - busy) if waiting else 0.0))
        return fractions
