"""The metrics routes and the live feed's stream (the feed itself is `taskengine/feed.py`).

`GET /api/events` sends the history once, then one `tick` a second (the new history point, the
metrics snapshot and the workers of every instance).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.context import ApiContext
from taskengine.api.endpoints import LIVE, bind
from taskengine.api.errors import ApiError
from taskengine.api.tasks import json_response
from taskengine.feed import HISTORY_RANGES

PING_EVERY = 15.0
DEFAULT_RANGE = "5m"
SEND_TIMEOUT = 10.0


def routes(ctx: ApiContext) -> list[Route]:
    """/api/metrics, /api/metrics/history, /api/events and /metrics bound to `ctx`."""
    live = ctx.live

    async def metrics(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        rows = await ctx.app.inspector.counts()
        now = ctx.app.clock.now()
        reports = await live.other_reports(now)
        return json_response(live.snapshot(rows, live.status(now), now, reports))

    async def history(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        name = request.query_params.get("range", DEFAULT_RANGE)
        seconds = HISTORY_RANGES.get(name)
        if seconds is None:
            names = ", ".join(HISTORY_RANGES)
            raise ApiError(422, "validation_error", f"range must be one of {names}, got {name!r}")
        return Response(live.sampler.history.encode(seconds), media_type="application/json")

    async def events(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        return EventSourceResponse(
            _sse(live.events()),
            ping=PING_EVERY,
            send_timeout=SEND_TIMEOUT,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def prometheus(request: Request) -> Response:
        ctx.tokens.check(request, "read")
        # on the loop, not a thread: the collector reads dicts the loop is updating
        body, content_type = live.exposition()
        return Response(body, media_type=content_type)

    return bind(
        LIVE,
        {
            "getMetrics": metrics,
            "getMetricsHistory": history,
            "streamEvents": events,
            "getPrometheusMetrics": prometheus,
        },
    )


async def _sse(events: AsyncIterator[tuple[str, str]]) -> AsyncIterator[ServerSentEvent]:
    """The feed's (event, data) pairs as server-sent events."""
    async for event, data in events:
        yield ServerSentEvent(data, event=event)
