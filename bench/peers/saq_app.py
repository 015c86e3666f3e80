"""SAQ (Simple Async Queue) on Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from saq import Queue

from bench.peers.common import (
    SLEEP_S,
    aincr,
    apaced,
    aproduce_main,
    arecord,
    gather_chunks,
    redis_url,
)

with contextlib.suppress(ImportError):  # as Task Engine's CLI does: uvloop when installed
    import uvloop

    uvloop.install()


async def noop(ctx: dict[str, Any]) -> None:
    await aincr()


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_S)
    await aincr()


async def mark(ctx: dict[str, Any], *, began: float) -> None:
    started = time.perf_counter()
    await arecord(began, started)


queue = Queue.from_url(redis_url())

settings = {"queue": queue, "functions": [noop, sleep, mark], "concurrency": 100}


async def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    await queue.connect()
    started()
    if kind == "mark":
        await apaced(count, lambda: queue.enqueue("mark", began=time.perf_counter()))
        await queue.disconnect()
        return
    await gather_chunks(lambda: queue.enqueue(kind), count)
    await queue.disconnect()


if __name__ == "__main__":
    aproduce_main(produce)
