"""`taskengine worker --metrics-port`: `/metrics`, `/healthz` and `/readyz` of one worker process.

For Prometheus (this process's series, labelled with its instance) and for a container's
liveness and readiness checks. It answers GET only, holds no token and serves no dashboard:
bind it where only the scraper and the orchestrator reach (`TASKENGINE_METRICS_HOST`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskengine.api.protocol import HttpLimits, guarded_protocol
from taskengine.api.schemas import HealthView
from taskengine.api.tasks import json_response
from taskengine.app import App
from taskengine.feed import engine_exposition

if TYPE_CHECKING:
    from taskengine.runtime.engine import Engine

log = logging.getLogger("taskengine.api")
READY_TIMEOUT = 2.0  # seconds the broker gets to answer a readiness check


async def readiness(app: App, engine: Engine | None) -> tuple[HealthView, int]:
    """What /readyz answers: the broker reachable and every duty of the pool healthy."""
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await app.inspector.paused()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    if engine is not None:
        checks.update(engine.health())
    ready = all(value == "ok" for value in checks.values())
    return HealthView("ok" if ready else "unavailable", checks), 200 if ready else 503


def probe_app(app: App, engine: Engine) -> Starlette:
    """The three routes over `engine`, the pool of this process."""
    scrape = engine_exposition(app, engine)

    async def metrics(request: Request) -> Response:
        body, content_type = scrape()
        return Response(body, media_type=content_type)

    async def healthz(request: Request) -> Response:
        return json_response(HealthView("ok"))

    async def readyz(request: Request) -> Response:
        view, status = await readiness(app, engine)
        return json_response(view, status)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the worker owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Probe:
    """The endpoint's server, started beside the pool and stopped after it."""

    def __init__(self, app: App, engine: Engine, host: str, port: int) -> None:
        config = uvicorn.Config(
            probe_app(app, engine),
            host=host,
            port=port,
            http=guarded_protocol(HttpLimits.from_settings(app.settings)),
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
        )
        self.server = _Server(config)
        self.host = host
        self.port = port
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; raise OSError if the port cannot be bound."""
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started and not self._task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self._task.done():  # uvicorn logs the bind error and exits its task
            with contextlib.suppress(SystemExit):
                self._task.result()
            self._task = None
            raise OSError(f"the metrics endpoint could not listen on {self.host}:{self.port}")

    @property
    def address(self) -> str:
        """host:port as bound (the port the kernel chose for port 0)."""
        for server in self.server.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                return f"{host}:{port}"
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        self.server.should_exit = True
        await task
