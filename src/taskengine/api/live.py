"""The live feed: a once-a-second tick to every open dashboard over SSE, and the metrics routes.

`GET /api/events` sends the history once, then one `tick` a second (the new history point, the
metrics snapshot and the workers of every instance). The tick is encoded once for all clients;
a client that stops reading loses old ticks, never slows the others.
"""

from __future__ import annotations

import asyncio
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
from taskengine.runtime.service import PeriodicService
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.history import Point
from taskengine.telemetry.prometheus import (
    CONTENT_TYPE,
    EngineCollector,
    build_registry,
    exposition,
)
from taskengine.telemetry.snapshot import metrics_snapshot

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
        self.sampler = app.inspector.sampler(
            self.status, Path(app.settings.data_dir) / HISTORY_FILE
        )
        self.sampler.expect_next_in(SAMPLE_EVERY)
        self.service = PeriodicService("sampler", SAMPLE_EVERY, self.tick)
        self.registry = build_registry(EngineCollector(app.metrics, self.sampler, self.status))
        self.closed = False
        self._subscribers: set[asyncio.Queue[bytes]] = set()

    def status(self, now: float | None = None) -> EngineStatus | None:
        """The engine's status as of `now` (default: the clock's); None without a pool here."""
        worker = self.ctx.worker
        return worker.status(now) if worker is not None else None

    def snapshot(
        self, rows: list[CountRow], status: EngineStatus | None, now: float
    ) -> dict[str, Any]:
        """The JSON metrics as of `now`, from `rows` (counts) and `status` (taken at `now`)."""
        return metrics_snapshot(
            self.ctx.app.metrics,
            rows,
            status,
            self.sampler,
            now=now,
            started_at=self.ctx.started_at,
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
        if self._subscribers:
            app = self.ctx.app
            now = app.clock.now()
            status = self.status(now)
            workers = await app.inspector.live_workers(now, status)
            payload = _encoder.encode(
                {
                    "point": point,
                    "metrics": self.snapshot(self.sampler.counts, status, now),
                    "workers": [worker_view(info) for info in workers],
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


def routes(ctx: ApiContext) -> list[Route]:
    """/api/metrics, /api/metrics/history, /api/events and /metrics bound to `ctx`."""
    live = ctx.live

    async def metrics(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        rows = await ctx.app.inspector.counts()
        now = ctx.app.clock.now()
        return json_response(live.snapshot(rows, live.status(now), now))

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
