"""taskiq with taskiq-redis's ListQueueBroker (LPUSH/BRPOP), no result backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from taskiq_redis import ListQueueBroker

from bench.peers.common import SLEEP_S, aincr, aproduce_main, gather_chunks, redis_url

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


async def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    task = noop if kind == "noop" else sleep
    await broker.startup()
    started()
    await gather_chunks(task.kiq, count)
    await broker.shutdown()


if __name__ == "__main__":
    aproduce_main(produce)
