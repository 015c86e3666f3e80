"""taskiq with taskiq-redis's ListQueueBroker (LPUSH/BRPOP), no result backend."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from taskiq_redis import ListQueueBroker

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

broker = ListQueueBroker(url=redis_url())


@broker.task(task_name="bench.noop")
async def noop() -> None:
    await aincr()


@broker.task(task_name="bench.sleep")
async def sleep() -> None:
    await asyncio.sleep(SLEEP_S)
    await aincr()


@broker.task(task_name="bench.mark")
async def mark(began: float) -> None:
    started = time.perf_counter()
    await arecord(began, started)


async def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    await broker.startup()
    if kind == "mark":
        started()
        await apaced(count, lambda: mark.kiq(time.perf_counter()))
        await broker.shutdown()
        return
    task = noop if kind == "noop" else sleep
    started()
    await gather_chunks(task.kiq, count)
    await broker.shutdown()


if __name__ == "__main__":
    aproduce_main(produce)
