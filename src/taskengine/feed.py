"""The live feed: a once-a-second sample, fanned out to every open dashboard as an SSE tick.

Each tick (the new history point, the metrics snapshot, the workers of every instance and the
progress of the tasks they run, read in one broker call) is encoded once for all clients; a
client that stops reading loses old ticks, never slows the others. The API's routes serve it
(`api/live.py`): this module knows no HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from taskengine.brokers.base import CountRow
from taskengine.runtime.service import PeriodicService
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.aggregate import SecondsMerger, others
from taskengine.telemetry.history import RANGES, Point
from taskengine.telemetry.prometheus import (
    CONTENT_TYPE,
    EngineCollector,
    build_registry,
    exposition,
)
from taskengine.telemetry.report import InstanceTelemetry
from taskengine.telemetry.snapshot import metrics_snapshot
from taskengine.views import progress_view, worker_view

if TYPE_CHECKING:
    from taskengine.app import App
    from taskengine.runtime.engine import Engine

HISTORY_RANGES = RANGES  # /api/metrics/history?range=: name -> seconds (5m, 1h, 24h)
SAMPLE_EVERY = 1.0
BACKLOG_PER_CLIENT = 5  # ticks a slow client may fall behind before old ones are dropped
HISTORY_FILE = "metrics-history.json"

END = b""  # put in a subscriber's queue: the stream ends
_encoder = msgspec.json.Encoder()


class LiveFeed:
    """Samples once a second and fans the tick out to SSE subscribers."""

    def __init__(
        self, app: App, engine: Callable[[], Engine | None], started_at: float = 0.0
    ) -> None:
        self.app = app
        self.engine = engine  # this process's engine, if it runs one (read at each call)
        self.started_at = started_at
        self.sampler = app.inspector.sampler(
            self.status, Path(app.settings.data_dir) / HISTORY_FILE
        )
        self.sampler.expect_next_in(SAMPLE_EVERY)
        self.service = PeriodicService("sampler", SAMPLE_EVERY, self.tick)
        self.reports: list[InstanceTelemetry] = []  # the other instances', as of the last tick
        self.merger = SecondsMerger()
        self.registry = build_registry(
            EngineCollector(
                app.metrics, self.sampler, self.status, lambda: self.reports, self.own_instance
            )
        )
        self.closed = False
        self._subscribers: set[asyncio.Queue[bytes]] = set()

    def status(self, now: float | None = None) -> EngineStatus | None:
        """The engine's status as of `now` (default: the clock's); None without a pool here."""
        engine = self.engine()
        return engine.status(now) if engine is not None else None

    def own_instance(self) -> str | None:
        """This process's engine instance; None without a pool here."""
        engine = self.engine()
        return engine.instance if engine is not None else None

    async def other_reports(self, now: float) -> list[InstanceTelemetry]:
        """The reports of every other live instance, read now (one broker call)."""
        return others(await self.app.inspector.instances(now), self.own_instance())

    def snapshot(
        self,
        rows: list[CountRow],
        status: EngineStatus | None,
        now: float,
        reports: list[InstanceTelemetry] | None = None,
    ) -> dict[str, Any]:
        """The cluster's JSON metrics as of `now`, from `rows` (counts), `status` (taken at
        `now`) and the other instances' `reports` (default: those of the last tick)."""
        from taskengine import __version__

        return metrics_snapshot(
            self.app.metrics,
            rows,
            status,
            self.sampler,
            now=now,
            started_at=self.started_at,
            reports=self.reports if reports is None else reports,
            version=__version__,
        )

    async def start(self) -> None:
        """Load the saved history and start sampling."""
        await asyncio.to_thread(self.sampler.load_history)
        await self.service.start()

    def close_streams(self) -> None:
        """End every open stream and refuse new ones (shutdown: uvicorn waits for streams)."""
        self.closed = True
        for queue in self._subscribers:
            _put_dropping_oldest(queue, END)

    async def stop(self) -> None:
        """End every stream, stop sampling and save the history."""
        self.close_streams()
        await self.service.stop()
        await self.sampler.save()

    async def tick(self) -> Point:
        """Sample once; send the tick to every subscriber."""
        point = await self.sampler.run_once()
        app = self.app
        now = app.clock.now()
        self.reports = await self.other_reports(now)
        amended = self.merger.merge(self.sampler.history, self.reports)
        if self._subscribers:
            status = self.status(now)
            workers = await app.inspector.live_workers(now, status)
            running = [info.current_task for info in workers if info.current_task]
            progress = await app.inspector.progress(running)
            payload = _encoder.encode(
                {
                    "point": point,
                    "amended": [p for p in amended if p is not point],
                    "metrics": self.snapshot(self.sampler.counts, status, now),
                    "workers": [worker_view(info) for info in workers],
                    "progress": {task: progress_view(p) for task, p in progress.items()},
                }
            )
            for queue in self._subscribers:
                _put_dropping_oldest(queue, payload)
        return point

    async def events(self) -> AsyncIterator[tuple[str, str]]:
        """The stream of one client as (event, data): the history, then ticks until it leaves
        or we stop."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(BACKLOG_PER_CLIENT)
        self._subscribers.add(queue)
        try:
            if self.closed:
                return
            yield "history", self.sampler.history.encode().decode()
            while (payload := await queue.get()) != END:
                yield "tick", payload.decode()
        finally:
            self._subscribers.discard(queue)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of this process's registry and its content type."""
        return exposition(self.registry), CONTENT_TYPE


def engine_exposition(app: App, engine: Engine) -> Callable[[], tuple[bytes, str]]:
    """The Prometheus text of one worker process (its own series only) and its content type,
    as of each call: what `worker --metrics-port` serves."""
    sampler = app.inspector.sampler(engine.status)
    registry = build_registry(
        EngineCollector(app.metrics, sampler, engine.status, tuple, lambda: engine.instance)
    )
    return lambda: (exposition(registry), CONTENT_TYPE)


def _put_dropping_oldest(queue: asyncio.Queue[bytes], item: bytes) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
