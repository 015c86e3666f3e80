"""What every peer module shares: the completion counter and the producer's command line.

Each benchmark task ends with `INCR bench:done` on the benchmark's Redis server; the driver
polls that key. Producers record when they start and stop enqueueing (time.time(), as float
strings) so the driver can time producer and workers together. Imports only the standard
library and redis-py, which both virtualenvs have.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

COUNTER = "bench:done"
PRODUCE_START = "bench:produce_start"
PRODUCE_END = "bench:produce_end"
SLEEP_S = 0.01
KINDS = ("noop", "sleep")


def redis_url() -> str:
    """The benchmark server (every system's broker, and the counter)."""
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


_sync: dict[int, redis.Redis] = {}
_async: dict[int, Any] = {}


def sync_client() -> redis.Redis:
    """One client per process (created after a fork, never inherited)."""
    pid = os.getpid()
    client = _sync.get(pid)
    if client is None:
        client = _sync[pid] = redis.Redis.from_url(redis_url())
    return client


def incr() -> None:
    """Count one completed task (blocking client; cooperative under gevent)."""
    sync_client().incr(COUNTER)


async def aincr() -> None:
    """Count one completed task (asyncio client, one per event loop)."""
    import redis.asyncio as aioredis

    key = id(asyncio.get_running_loop())
    client = _async.get(key)
    if client is None:
        client = _async[key] = aioredis.Redis.from_url(redis_url())
    await client.incr(COUNTER)


def mark(key: str) -> None:
    """Record a wall-clock time stamp for the driver."""
    sync_client().set(key, repr(time.time()))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="enqueue benchmark tasks")
    parser.add_argument("command", choices=("produce",))
    parser.add_argument("--kind", choices=KINDS, default="noop")
    parser.add_argument("--count", type=int, default=1000)
    return parser.parse_args(argv)


def produce_main(produce: Callable[[str, int, Callable[[], None]], None]) -> None:
    """`python -m bench.peers.<peer> produce --kind K --count N`, synchronous producer.

    `produce(kind, count, started)` sets up its client, calls `started()` just before the
    first enqueue, and returns when every task is enqueued.
    """
    args = parse()
    produce(args.kind, args.count, lambda: mark(PRODUCE_START))
    mark(PRODUCE_END)


def aproduce_main(produce: Callable[[str, int, Callable[[], None]], Awaitable[None]]) -> None:
    """The same for an asyncio producer."""
    args = parse()
    asyncio.run(produce(args.kind, args.count, lambda: mark(PRODUCE_START)))
    mark(PRODUCE_END)


async def gather_chunks(make: Callable[[], Awaitable[Any]], count: int, chunk: int = 100) -> None:
    """Enqueue `count` tasks, `chunk` concurrent calls at a time (async producers)."""
    done = 0
    while done < count:
        n = min(chunk, count - done)
        await asyncio.gather(*(make() for _ in range(n)))
        done += n
