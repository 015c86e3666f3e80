"""Task Engine, run from the project's .venv: `taskengine --app bench.peers.te_app:app worker`.

The broker comes from BENCH_TE_BROKER (or the worker's `--broker`). Producer:
`.venv/bin/python -m bench.peers.te_app produce --kind noop --count N` (submit_many, 100 a call).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from bench.peers.common import SLEEP_S, aincr, apaced, aproduce_main, arecord
from taskengine import App
from taskengine.app import TaskRequest

app = App(os.environ.get("BENCH_TE_BROKER", "sqlite:///bench-peers.db"))
TYPES = {"noop": "bench.noop", "sleep": "bench.sleep", "mark": "bench.mark"}


@app.task(TYPES["noop"])
async def noop(payload: Any) -> None:
    await aincr()


@app.task(TYPES["sleep"])
async def sleep(payload: Any) -> None:
    await asyncio.sleep(SLEEP_S)
    await aincr()


@app.task(TYPES["mark"])
async def mark(payload: Any) -> None:
    started = time.perf_counter()
    await arecord(payload, started)


async def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    if kind == "mark":  # one `app.submit` per task, as a web request would
        async with app:
            started()
            await apaced(count, lambda: app.submit(TYPES["mark"], time.perf_counter()))
        return
    batch = [TaskRequest(type=TYPES[kind]) for _ in range(100)]
    async with app:
        started()
        done = 0
        while done < count:
            n = min(100, count - done)
            await app.submit_many(batch[:n])
            done += n


if __name__ == "__main__":
    aproduce_main(produce)
