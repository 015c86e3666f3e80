"""`taskengine serve`: the API on uvicorn and the worker pool in one event loop.

SIGTERM/SIGINT: stop accepting requests, finish in-flight ones, then stop the pool gracefully
(DESIGN.md, Shutdown). A second signal skips the waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Iterator

import uvicorn

from taskengine.api import ApiContext, build_api
from taskengine.api.auth import Tokens
from taskengine.app import App
from taskengine.errors import ConfigurationError

log = logging.getLogger("taskengine.api")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the engine owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse to listen beyond loopback without a token."""
    if not is_loopback(host) and not tokens.enabled:
        raise ConfigurationError(
            f"refusing to listen on {host} without an API token: set TASKENGINE_API_TOKENS "
            "(for example admin:<32 random characters>) or bind 127.0.0.1"
        )


async def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    tokens: Tokens | None = None,
    run_workers: bool = True,
    ready: asyncio.Event | None = None,
) -> int:
    """Serve until a signal; return the exit code (0 after a graceful stop)."""
    tokens = tokens or Tokens({})
    check_bind(host, tokens)
    await app.start()
    worker = app.worker() if run_workers else None
    if worker is not None:
        await worker.start()
    ctx = ApiContext(app=app, worker=worker, tokens=tokens, started_at=app.clock.now())
    await ctx.live.start()
    config = uvicorn.Config(
        build_api(ctx),
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("stopping gracefully (signal again to skip the wait)")
            server.should_exit = True
            ctx.live.close_streams()  # open dashboards end theirs, so uvicorn can stop
        else:
            server.force_exit = True
            if worker is not None:
                worker.force_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        serving = asyncio.create_task(server.serve())
        # uvicorn offers no start-up event; its `started` flag is the documented signal
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            log.info("serving", extra={"url": f"http://{host}:{port}"})
            print(f"Task Engine at http://{host}:{port}/ (API docs at /docs)", flush=True)
            if ready is not None:
                ready.set()
        await serving
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await ctx.live.stop()
        if worker is not None:
            await worker.stop()
        await app.close()
    return 0
