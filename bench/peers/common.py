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
LATENCY = "bench:latency"  # the latency workload: submit -> handler start, seconds, per task
PRODUCE_START = "bench:produce_start"
PRODUCE_END = "bench:produce_end"
SLEEP_S = 0.01
KINDS = ("noop", "sleep", "mark")  # mark: the latency workload's task
_rate = 0.0  # the latency workload's submits per second (--rate)


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


def record(began: float, started: float) -> None:
    """Note one task's submit -> start delay and count it (one round trip, blocking)."""
    sync_client().pipeline(transaction=False).rpush(LATENCY, started - began).incr(
        COUNTER
    ).execute()


async def arecord(began: float, started: float) -> None:
    """The same from asyncio (one client per event loop)."""
    import redis.asyncio as aioredis

    key = id(asyncio.get_running_loop())
    client = _async.get(key)
    if client is None:
        client = _async[key] = aioredis.Redis.from_url(redis_url())
    await client.pipeline(transaction=False).rpush(LATENCY, started - began).incr(COUNTER).execute()


def paced(count: int, submit: Callable[[], Any]) -> None:
    """Call `submit` `count` times on a fixed schedule of --rate calls a second. Each call
    reads time.perf_counter() (CLOCK_MONOTONIC, shared by the machine's processes) just
    before the system's submit and passes it to the task."""
    start = time.perf_counter()
    for n in range(count):
        wait = start + n / _rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        submit()


async def apaced(count: int, submit: Callable[[], Awaitable[Any]]) -> None:
    """The same for an asyncio producer: one submit awaited at a time."""
    start = time.perf_counter()
    for n in range(count):
        wait = start + n / _rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        await submit()


def mark(key: str) -> None:
    """Record a wall-clock time stamp for the driver."""
    sync_client().set(key, repr(time.time()))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="enqueue benchmark tasks")
    parser.add_argument("command", choices=("produce",))
    parser.add_argument("--kind", choices=KINDS, default="noop")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="mark: submits per second")
    args = parser.parse_args(argv)
    global _rate
    _rate = args.rate
    return args


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
