"""The live feed: a once-a-second tick to every open dashboard over SSE, and the metrics routes.

`GET /api/events` sends the history once, then one `tick` a second (the new history point, the
metrics snapshot and the workers of every instance). The tick is encoded once for all clients;
a client that stops reading loses old ticks, never slows the others.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.schemas import worker_view
from taskengine.api.tasks import json_response
from taskengine.brokers.base import CountRow
from taskengine.metrics.figures import broker_figures
from taskengine.metrics.history import Point
from taskengine.metrics.prometheus import CONTENT_TYPE, EngineCollector, build_registry, exposition
from taskengine.metrics.sampler import Sampler
from taskengine.model.worker import WorkerInfo
from taskengine.process_stats import process_stats
from taskengine.runtime.service import PeriodicService

if TYPE_CHECKING:
    from taskengine.api.context import ApiContext

SAMPLE_EVERY = 1.0
PING_EVERY = 15.0
SEND_TIMEOUT = 10.0
BACKLOG_PER_CLIENT = 5  # ticks a slow client may fall behind before old ones are dropped
HISTORY_FILE = "metrics-history.json"

END = b""  # put in a subscriber's queue: the stream ends
_encoder = msgspec.json.Encoder()


class LiveFeed:
    """Samples once a second and fans the tick out to SSE subscribers."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        app = ctx.app
        self.sampler = Sampler(
            app.metrics,
            app.broker,
            app.clock,
            pool=ctx.worker.pool if ctx.worker is not None else None,
            history_path=Path(app.settings.data_dir) / HISTORY_FILE,
        )
        self.sampler.expect_next_in(SAMPLE_EVERY)
        self.service = PeriodicService("sampler", SAMPLE_EVERY, self.tick)
        self.registry = build_registry(
            EngineCollector(app.metrics, self.sampler, lambda: self.ctx.worker)
        )
        self.closed = False
        self._subscribers: set[asyncio.Queue[bytes]] = set()

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
        if self._subscribers:
            workers = await self.ctx.app.broker.workers(self._seen_since())
            payload = _encoder.encode(
                {
                    "point": point,
                    "metrics": snapshot(self.ctx, self.sampler.counts),
                    "workers": [worker_view(info) for info in self._fresh(workers)],
                }
            )
            for queue in self._subscribers:
                _put_dropping_oldest(queue, payload)
        return point

    async def events(self) -> AsyncIterator[ServerSentEvent]:
        """The stream of one client: the history, then ticks until it leaves or we stop."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(BACKLOG_PER_CLIENT)
        self._subscribers.add(queue)
        try:
            if self.closed:
                return
            yield ServerSentEvent(self.sampler.history.encode().decode(), event="history")
            while (payload := await queue.get()) != END:
                yield ServerSentEvent(payload.decode(), event="tick")
        finally:
            self._subscribers.discard(queue)

    def _seen_since(self) -> float:
        return self.ctx.app.clock.now() - 3 * self.ctx.app.settings.heartbeat_every

    def _fresh(self, infos: list[WorkerInfo]) -> list[WorkerInfo]:
        """Registry entries, with this process's workers as they are now (not at last heartbeat)."""
        worker = self.ctx.worker
        if worker is None:
            return infos
        now = self.ctx.app.clock.now()
        host, pid = socket.gethostname(), os.getpid()
        local = {
            slot.id: slot.info(worker.instance, host, pid, now)
            for slot in worker.pool.slots.values()
            if slot.task is not None  # retired slots left the registry too
        }
        merged = [local.pop(info.id, info) for info in infos]
        return sorted([*merged, *local.values()], key=lambda info: info.id)


def snapshot(ctx: ApiContext, rows: list[CountRow]) -> dict[str, Any]:
    """The JSON metrics: counters, rates, timings, depth, pool, breakers, process."""
    now = ctx.app.clock.now()
    body = ctx.app.metrics.snapshot(now)
    worker = ctx.worker
    # Leased but still in this instance's buffer is not running yet.
    body.update(broker_figures(rows, worker.pool.waiting if worker is not None else 0))
    body["breakers"] = []
    if worker is not None:
        pool = worker.pool
        body["pool"] = {
            "instance": worker.instance,
            "size": pool.size,
            "busy": pool.busy,
            "utilisation": pool.busy / pool.size if pool.size else 0.0,
            "efficiency": round(ctx.live.sampler.efficiency(), 4),
            "buffered": pool.waiting,
            "overrunning_threads": worker.runner.overrunning_threads,
        }
        body["breakers"] = [
            {"name": name, "state": str(snap.state), "retry_after": snap.retry_after}
            for name, snap in sorted(worker.breakers.snapshots(now).items())
        ]
    sampler = ctx.live.sampler
    # the sampler's reading: CPU % over its last second, not since a call milliseconds ago
    stats = sampler.process or process_stats()
    body["process"] = {**stats, "loop_lag_seconds": sampler.loop_lag}
    body["uptime_seconds"] = now - ctx.started_at if ctx.started_at else 0.0
    return body


def routes(ctx: ApiContext) -> list[Route]:
    """/api/metrics, /api/metrics/history, /api/events and /metrics bound to `ctx`."""
    live = ctx.live

    async def metrics(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return json_response(snapshot(ctx, await ctx.app.broker.counts()))

    async def history(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return Response(live.sampler.history.encode(), media_type="application/json")

    async def events(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return EventSourceResponse(
            live.events(),
            ping=PING_EVERY,
            send_timeout=SEND_TIMEOUT,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def prometheus(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        # on the loop, not a thread: the collector reads dicts the loop is updating
        return Response(exposition(live.registry), media_type=CONTENT_TYPE)

    return [
        Route("/api/metrics", metrics, methods=["GET"]),
        Route("/api/metrics/history", history, methods=["GET"]),
        Route("/api/events", events, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]


def _put_dropping_oldest(queue: asyncio.Queue[bytes], item: bytes) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
