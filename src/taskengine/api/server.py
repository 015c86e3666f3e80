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
from typing import TYPE_CHECKING

import uvicorn

from taskengine.api import ApiContext, build_api
from taskengine.api.auth import Tokens
from taskengine.api.hosts import AllowedHosts
from taskengine.api.protocol import HttpLimits, guarded_protocol
from taskengine.app import App
from taskengine.errors import ConfigurationError

if TYPE_CHECKING:
    from taskengine.runtime.engine import Engine

log = logging.getLogger("taskengine.api")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPORT_EVERY = 5.0  # seconds between "waiting for N running tasks" lines at shutdown


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
    allowed_hosts: tuple[str, ...] = (),
    limits: HttpLimits | None = None,
    run_workers: bool = True,
    ready: asyncio.Event | None = None,
) -> int:
    """Serve until a signal; return the exit code (0 after a graceful stop).

    `allowed_hosts`: Host names served besides the defaults and `host` (api/hosts.py);
    `limits`: what one client may make the server hold (api/protocol.py; default: the app's
    settings).
    """
    tokens = tokens or Tokens({})
    check_bind(host, tokens)
    hosts = AllowedHosts.for_server(host, allowed_hosts)
    await app.start()
    worker = app.engine() if run_workers else None
    ctx = ApiContext(
        app=app, worker=worker, tokens=tokens, allowed_hosts=hosts, started_at=app.clock.now()
    )
    config = uvicorn.Config(
        build_api(ctx),
        host=host,
        port=port,
        http=guarded_protocol(limits or HttpLimits.from_settings(app.settings)),
        ws="none",  # the API serves no WebSocket: an upgrade would escape the limits
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    shutdown = _Shutdown(server, ctx, worker)
    if worker is not None:  # a remote SHUTDOWN (ADR 0036) stops the server as SIGTERM does
        worker.on_shutdown = shutdown.on_remote_shutdown
    loop = asyncio.get_running_loop()
    # Handlers first: a signal once a task may run must stop gracefully, never kill.
    for sig in SIGNALS:
        loop.add_signal_handler(sig, shutdown.on_signal, sig)
    try:
        if worker is not None:
            await worker.start()
        await ctx.live.start()
        serving = asyncio.create_task(server.serve())
        # uvicorn offers no start-up event; its `started` flag is the documented signal
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if server.started:
            log.info(
                "serving",
                extra={"url": f"http://{host}:{port}", "allowed_hosts": list(hosts.patterns)},
            )
            print(f"Task Engine at http://{host}:{port}/ (API docs at /docs)", flush=True)
            if ready is not None:
                ready.set()
        await serving
        await ctx.live.stop()
        # The handlers stay until the pool has stopped: a second signal during its grace
        # skips the wait and still hands running tasks back (it must not kill the process).
        await shutdown.stopped()
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        if not shutdown.done:  # serving failed (a port in use) or was cancelled
            await ctx.live.stop()
            if worker is not None:
                await worker.stop()
        await app.close()
    return 0


class _Shutdown:
    """What SIGTERM/SIGINT do to a running `serve`: the first stops gracefully, the next at once."""

    def __init__(self, server: uvicorn.Server, ctx: ApiContext, worker: Engine | None) -> None:
        self.server = server
        self.ctx = ctx
        self.worker = worker
        self.signals = 0
        self.deadline: float | None = None  # loop time when the grace period ends
        self.stopping: asyncio.Task[None] | None = None
        self.done = False  # the pool has stopped and the live view is saved

    def running(self) -> int:
        """Tasks running in this process's pool now."""
        return 0 if self.worker is None else self.worker.status().busy

    def on_remote_shutdown(self) -> None:
        """A SHUTDOWN sent through the broker (ADR 0036): as a first SIGTERM."""
        log.info("remote control: shutdown asked through the broker")
        if self.signals == 0:
            self.on_signal(signal.SIGTERM)

    def on_signal(self, signum: signal.Signals) -> None:
        """Count the signal and act on it (called on the loop)."""
        self.signals += 1
        running = self.running()
        if self.signals == 1:
            self.server.should_exit = True
            if self.worker is None:
                log.info("%s: stopping (no workers here)", signum.name)
                self.ctx.live.close_streams()
                return
            grace = self.worker.settings.shutdown_grace
            self.deadline = asyncio.get_running_loop().time() + grace
            log.info(
                "%s: stopping gracefully: %s, up to %s s to finish (signal again to skip the wait)",
                signum.name,
                _tasks(running),
                f"{grace:g}",
                extra={"signal": signum.name, "running": running, "grace": grace},
            )
            self.ctx.live.close_streams()  # open dashboards end theirs, so uvicorn can stop
            # The pool stops taking tasks now, while uvicorn finishes the requests in flight.
            self.stopping = asyncio.get_running_loop().create_task(self.stop_worker())
            return
        log.warning(
            "%s again: stopping now, interrupting %s (handed back, no attempt spent)",
            signum.name,
            _tasks(running),
            extra={"signal": signum.name, "running": running},
        )
        self.server.force_exit = True
        if self.worker is not None:
            self.worker.force_stop()

    async def stopped(self) -> None:
        """Wait until the pool has stopped (stopping it now if no signal did)."""
        if self.stopping is None:
            self.stopping = asyncio.get_running_loop().create_task(self.stop_worker())
        await self.stopping
        self.done = True

    async def stop_worker(self) -> None:
        """Stop the pool gracefully, saying every few seconds what it is waiting for."""
        if self.worker is None:
            return
        loop = asyncio.get_running_loop()
        if self.deadline is None:  # stopping without a signal (the server failed)
            self.deadline = loop.time() + self.worker.settings.shutdown_grace
        stopping = asyncio.ensure_future(self.worker.stop())
        while not stopping.done():
            running = self.running()
            if running and self.signals < 2:  # after a second signal nothing waits any more
                left = max(0.0, self.deadline - loop.time())
                log.info(
                    "waiting for %s to finish (%s s of grace left; signal again to stop now)",
                    _tasks(running),
                    f"{left:.0f}",
                    extra={"running": running, "grace_left": round(left, 1)},
                )
            await asyncio.wait([stopping], timeout=REPORT_EVERY)
        await stopping


def _tasks(count: int) -> str:
    return f"{count} running task{'' if count == 1 else 's'}"
