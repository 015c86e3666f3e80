"""An engine process for the cluster-wide limits test (ADR 0038).

    python tests/e2e/limited_child.py

The broker comes from TASKENGINE_BROKER_URL. Task type `held` (max_concurrency=3) sleeps
payload seconds; `paced` (rate_limit="20/s") returns at once. Each appends "start ID NS" and
"finish ID NS" lines (NS: time.time_ns) to the file named by LIMITED_CHILD_LOG, written with
O_APPEND in one write, so lines of several processes never interleave. Runs until SIGTERM;
prints "ready" once the pool runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from taskengine.app import App
from taskengine.registry import TaskContext

HELD_LIMIT = 3
PACED_RATE = 20.0  # per second: "20/s"; the bucket holds default_burst(20) = 2 tokens


def note(event: str, ctx: TaskContext) -> None:
    """Append one line for this run to the shared log."""
    line = f"{event} {ctx.task_id} {time.time_ns()}\n".encode()
    fd = os.open(os.environ["LIMITED_CHILD_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def build_app(url: str | None = None) -> App:
    """The app of this process (and of the test that submits to it)."""
    app = App(url, builtins=False)

    @app.task("held", max_concurrency=HELD_LIMIT)
    async def held(payload: float, ctx: TaskContext) -> None:
        note("start", ctx)
        await asyncio.sleep(payload)
        note("finish", ctx)

    @app.task("paced", rate_limit="20/s")
    async def paced(payload: int, ctx: TaskContext) -> None:
        note("start", ctx)
        note("finish", ctx)

    return app


async def serve() -> None:
    app = build_app()
    async with app:
        engine = app.engine(workers=4, idle_wait=5.0)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(engine.stop()))
        await engine.start()
        print("ready", flush=True)
        await engine.wait_stopped()


if __name__ == "__main__":
    asyncio.run(serve())
