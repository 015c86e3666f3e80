"""The latency benchmark's producer, a process of its own: `python -m bench.latency_producer
URL RATE SECONDS BATCH` submits `bench.mark` tasks on a fixed schedule (RATE tasks/s offered,
BATCH per call: 1 is `app.submit`, more is `app.submit_many`) and prints one JSON line per
task: id, when its submit call began and when it returned (perf_counter seconds)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench import loop_runner
from taskengine import App, TaskRequest


async def produce(app: App, rate: float, seconds: float, batch: int) -> list[list[Any]]:
    """Submit for `seconds` through a started `app`; return [id, submit began, submit
    returned] per task."""
    calls = int(rate * seconds / batch)
    lines: list[list[Any]] = []
    start = time.perf_counter()
    for n in range(calls):
        wait = start + n * batch / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        began = time.perf_counter()
        if batch == 1:
            ids = [await app.submit("bench.mark", None)]
        else:
            ids = await app.submit_many([TaskRequest(type="bench.mark")] * batch)
        returned = time.perf_counter()
        lines += [[task_id, began, returned] for task_id in ids]
    return lines


async def _main(url: str, rate: float, seconds: float, batch: int) -> list[list[Any]]:
    app = App(url, builtins=False)

    @app.task("bench.mark")
    async def mark(payload: Any) -> None:  # the workers' handler; here only for validation
        return None

    await app.start()
    try:
        return await produce(app, rate, seconds, batch)
    finally:
        await app.close()


def main() -> None:
    """Run one producer and print its lines."""
    url, rate, seconds, batch = (
        sys.argv[1],
        float(sys.argv[2]),
        float(sys.argv[3]),
        int(sys.argv[4]),
    )
    for line in loop_runner(_main(url, rate, seconds, batch)):
        print(json.dumps(line))


if __name__ == "__main__":
    main()
