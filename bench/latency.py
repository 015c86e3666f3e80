"""Submit → start latency at a fixed offered load.

One process holds the producer and a pool of 10 workers (as `taskengine serve` does). The
producer submits one no-op task every millisecond, on a schedule (1,000 tasks/s offered, for
5 s after 0.5 s of warm-up); each task carries the `perf_counter` read just before its submit,
and the handler notes the delay when it starts. So the figure includes the enqueue, the wake-up
of an idle fetcher, the reserve and the hand-over to a worker.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from typing import Any

from bench import loop_runner, row
from taskengine.app import App
from taskengine.settings import Settings

RATE = 1_000  # tasks/s offered
SECONDS = 5.0
WARMUP = 0.5
BROKERS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/latency.db",
    "redis": "redis://127.0.0.1:6379/0?namespace=lat{uid}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test?schema=lat{uid}",
}


async def latencies(url: str) -> list[float]:
    """Submit→start delays in ms of every task after the warm-up."""
    app = App(settings=Settings(broker_url=url, workers=10), builtins=False)
    delays: list[float] = []

    @app.task("bench.mark")
    async def mark(payload: float) -> None:
        delays.append((time.perf_counter() - payload) * 1000)

    await app.start()
    worker = app.worker()
    await worker.start()
    total = int(RATE * (SECONDS + WARMUP))
    try:
        start = time.perf_counter()
        for n in range(total):
            wait = start + n / RATE - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await app.submit("bench.mark", time.perf_counter())
        while len(delays) < total:  # noqa: ASYNC110 (polling a list the handler fills)
            await asyncio.sleep(0.01)
    finally:
        await worker.stop()
        drop = getattr(app.broker, "drop_schema", None) or getattr(
            app.broker, "drop_namespace", None
        )
        if drop is not None:
            await drop()
        await app.close()
    return delays[int(RATE * WARMUP) :]


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """p50 and p99 of submit→start, median of `runs` per broker."""
    rows = []
    for name, template in BROKERS.items():
        p50s, p99s = [], []
        for _ in range(runs):
            url = template.format(tmp=tempfile.mkdtemp(), uid=uuid.uuid4().hex[:8])
            delays = loop_runner(latencies(url))
            p50s.append(_percentile(delays, 50))
            p99s.append(_percentile(delays, 99))
            progress(f"{name}: submit->start p50 {p50s[-1]:.2f} ms, p99 {p99s[-1]:.2f} ms")
        rows.append(row(f"{name}: submit->start p50 at {RATE:,}/s (ms)", p50s))
        rows.append(row(f"{name}: submit->start p99 at {RATE:,}/s (ms)", p99s))
    return rows
