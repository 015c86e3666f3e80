"""The ceilings the engine's figures compare against, on this machine.

- A bare `asyncio.Queue`: one producer puts no-op items, 100 consumer coroutines get them (the
  shape of the engine's buffer and workers, with nothing else: no broker, no records).
- `redis-benchmark` against the Redis the brokers use: LPUSH and RPOP one at a time and
  pipelined by 100, and `EVAL "return 1" 0` (what a Lua script costs before it does anything).
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
import time
from typing import Any

from bench import loop_runner, row

QUEUE_ITEMS = 500_000
CONSUMERS = 100
REDIS_REQUESTS = 200_000
REDIS_TESTS: dict[str, list[str]] = {
    "LPUSH, one at a time": ["-t", "lpush", "-P", "1"],
    "RPOP, one at a time": ["-t", "rpop", "-P", "1"],
    "LPUSH, pipelined by 100": ["-t", "lpush", "-P", "100"],
    "RPOP, pipelined by 100": ["-t", "rpop", "-P", "100"],
    'EVAL "return 1" 0, one at a time': ["-P", "1", "EVAL", "return 1", "0"],
}


async def queue_rate(items: int = QUEUE_ITEMS, consumers: int = CONSUMERS) -> float:
    """Items/s through one `asyncio.Queue` from one producer to `consumers` coroutines."""
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=1000)
    done = 0

    async def consume() -> None:
        nonlocal done
        while await queue.get() is not None:
            done += 1

    workers = [asyncio.create_task(consume()) for _ in range(consumers)]
    started = time.perf_counter()
    for n in range(items):
        await queue.put(n)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    assert done == items
    return items / elapsed


def redis_rate(args: list[str], requests: int = REDIS_REQUESTS) -> float:
    """Requests/s that `redis-benchmark` reports for one test (50 clients, its default)."""
    command = ["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-n", str(requests)]
    output = subprocess.run(
        [*command, "--csv", *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    rows = list(csv.reader(io.StringIO(output)))
    return float(rows[1][1])  # header, then "test","rps",latencies...


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Median of `runs` for the queue and each redis-benchmark test."""
    values = [loop_runner(queue_rate()) for _ in range(runs)]
    rows = [row(f"asyncio.Queue, 1 producer -> {CONSUMERS} consumers (items/s)", values)]
    progress(f"{rows[-1]['name']}: {rows[-1]['median']:,.0f}")
    if shutil.which("redis-benchmark") is None:
        progress("redis-benchmark not on PATH: Redis ceilings skipped")
        return rows
    for name, args in REDIS_TESTS.items():
        rows.append(
            row(f"redis-benchmark {name} (requests/s)", [redis_rate(args) for _ in range(runs)])
        )
        progress(f"{rows[-1]['name']}: {rows[-1]['median']:,.0f}")
    return rows
