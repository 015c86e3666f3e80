"""SAQ (Simple Async Queue) on Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from saq import Queue

from bench.peers.common import SLEEP_S, aincr, aproduce_main, gather_chunks, redis_url

with contextlib.suppress(ImportError):  # as Task Engine's CLI does: uvloop when installed
    import uvloop

    uvloop.install()


async def noop(ctx: dict[str, Any]) -> None:
    await aincr()


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_S)
    await aincr()


queue = Queue.from_url(redis_url())

settings = {"queue": queue, "functions": [noop, sleep], "concurrency": 100}


async def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    await queue.connect()
    started()
    await gather_chunks(lambda: queue.enqueue(kind), count)
    await queue.disconnect()


if __name__ == "__main__":
    aproduce_main(produce)
