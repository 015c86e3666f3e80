"""arq: asyncio jobs in a Redis sorted set; results not kept."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

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
    # arq 0.25's Worker calls asyncio.get_event_loop(), which uvloop's policy answers only when
    # a loop is set: give it one (the producer's asyncio.run makes its own).
    asyncio.set_event_loop(asyncio.new_event_loop())


async def noop(ctx: dict[str, Any]) -> None:
    await aincr()


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(SLEEP_S)
    await aincr()


async def mark(ctx: dict[str, Any], began: float) -> None:
    started = time.perf_counter()
    await arecord(began, started)


async def quiet(ctx: dict[str, Any]) -> None:
    """No line per job (arq logs two at INFO): the other systems run at WARNING too."""
    logging.getLogger("arq").setLevel(logging.WARNING)


class WorkerSettings:
    functions = [noop, sleep, mark]
    redis_settings = RedisSettings.from_dsn(redis_url())
    on_startup = quiet
    max_jobs = 100
    keep_result = 0
    poll_delay = 0.05  # arq's default is 0.5 s; 0.05 s doubled the no-op rate (0.01: no gain)


async def produce(kind: str, count: int, started: Callable[[], None]) -> None:
    pool = await create_pool(WorkerSettings.redis_settings)
    started()
    if kind == "mark":
        await apaced(count, lambda: pool.enqueue_job("mark", time.perf_counter()))
        await pool.aclose()
        return
    await gather_chunks(lambda: pool.enqueue_job(kind), count)
    await pool.aclose()


if __name__ == "__main__":
    aproduce_main(produce)
