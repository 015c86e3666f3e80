"""A CPU-heavy pipeline on the process executor: fan out to child processes, fan in, go on.

    python examples/cpu_pipeline.py [limit]

Stage 1 splits [0, limit) into chunks and counts the primes of each in a child process (a
CPU-bound handler on the event loop would stall every other task; in a thread it would hold
the GIL). Stage 2 submits one task with the totals. The children are a pool of `processes`
(the core count by default); a chunk that overruns its timeout kills only its own child.
"""

from __future__ import annotations

import asyncio
import math
import sys

import msgspec

from taskengine import App, ResultStatus, TaskRequest

app = App("sqlite:///cpu_pipeline.db")


class Chunk(msgspec.Struct):
    start: int
    stop: int


class Totals(msgspec.Struct):
    limit: int
    primes: int
    chunks: int


@app.task("primes.count", executor="process", timeout=300)
def count_primes(chunk: Chunk) -> int:
    """The primes in [start, stop), by a segmented sieve: pure CPU, in a child process."""
    low, high = max(chunk.start, 2), chunk.stop
    if high <= low:
        return 0
    is_prime = bytearray([1]) * (high - low)
    for p in range(2, math.isqrt(high - 1) + 1):
        first = max(p * p, (low + p - 1) // p * p)
        is_prime[first - low :: p] = bytes(len(range(first - low, high - low, p)))
    return sum(is_prime)


@app.task("primes.report")
async def report(totals: Totals) -> str:
    """Stage 2, on the event loop: what a pipeline does with the fan-in (store, notify...)."""
    return f"{totals.primes} primes below {totals.limit} ({totals.chunks} chunks)"


async def main(limit: int = 2_000_000, chunks: int = 8) -> str:
    size = -(-limit // chunks)
    async with app:
        engine = app.engine(processes=4)
        await engine.start()
        try:
            stage1 = await app.submit_many(
                [
                    TaskRequest(
                        type="primes.count", payload={"start": s, "stop": min(s + size, limit)}
                    )
                    for s in range(0, limit, size)
                ]
            )
            counts = [await app.result(task_id, timeout=300) for task_id in stage1]
            if any(result.status is not ResultStatus.SUCCESS for result in counts):
                raise SystemExit(f"a chunk failed: {[r.error for r in counts if r.error]}")
            totals = {"limit": limit, "primes": sum(r.data for r in counts), "chunks": len(counts)}
            summary = await app.result(await app.submit("primes.report", totals), timeout=60)
            return str(summary.data)
        finally:
            await engine.stop()


if __name__ == "__main__":
    # Process handlers are found by module and name in the child, and `__main__` is no name a
    # child can import: run this file's tasks as the module `cpu_pipeline` instead.
    import cpu_pipeline

    print(asyncio.run(cpu_pipeline.main(*(int(arg) for arg in sys.argv[1:2]))))
