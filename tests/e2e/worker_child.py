"""A real engine process for the SIGTERM tests: a worker pool on a SQLite file.

    python tests/e2e/worker_child.py [--workers N] [--grace S] [--until-idle]

The broker comes from TASKENGINE_BROKER_URL. Task type `slow` sleeps payload["sleep"] seconds
and appends "start ID ATTEMPT PID" and "finish ID ATTEMPT PID" lines to the file named by
WORKER_CHILD_LOG (flushed and fsynced, so a line is on disk before the run goes on).

SIGTERM or SIGINT stops the pool gracefully; a second one skips the grace period. Prints
"ready" once the pool runs, exits 0 after a clean stop. With --until-idle the pool stops by
itself once no task is due. `app` is also what `taskengine --app tests.e2e.worker_child:app`
loads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from taskengine.app import App
from taskengine.registry import TaskContext

app = App(builtins=False)


def note(event: str, ctx: TaskContext) -> None:
    path = os.environ.get("WORKER_CHILD_LOG")
    if not path:
        return
    with open(path, "a") as log:
        log.write(f"{event} {ctx.task_id} {ctx.attempt} {os.getpid()}\n")
        log.flush()
        os.fsync(log.fileno())


@app.task("slow", max_attempts=5)
async def slow(payload: dict[str, float], ctx: TaskContext) -> dict[str, float]:
    note("start", ctx)
    await asyncio.sleep(payload["sleep"])
    note("finish", ctx)
    return {"slept": payload["sleep"]}


async def serve(workers: int, grace: float, until_idle: bool) -> None:
    async with app:
        worker = app.engine(workers=workers, shutdown_grace=grace, idle_wait=0.1)
        stopping: list[asyncio.Task[None]] = []

        def on_signal() -> None:
            if not stopping:
                stopping.append(asyncio.create_task(worker.stop()))
            else:
                worker.force_stop()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await worker.start()
        print("ready", flush=True)
        if until_idle:
            await worker.run_until_idle(60)
            await worker.stop()
        await worker.wait_stopped()
        for task in stopping:
            await task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--grace", type=float, default=25.0)
    parser.add_argument("--until-idle", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.workers, args.grace, args.until_idle))


if __name__ == "__main__":
    main()
