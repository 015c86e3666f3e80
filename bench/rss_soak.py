"""Memory over a long run: RSS of one engine process across 1,000,000 no-op tasks.

One process runs the producer and a pool of 100 workers (as `taskengine serve` would) on a
fresh broker, with retention on (finished tasks kept 2 s, purged every second), so the store
stays small and anything that still grows is the engine's own. RSS is sampled every 50,000
completed tasks; the producer keeps at most 10,000 tasks waiting. One run per broker: the
figure is the curve, not a median.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

import psutil

from bench import loop_runner, row
from bench.runtime_rates import NOOP, make_app
from taskengine.app import TaskRequest

TOTAL = 1_000_000
SAMPLE_EVERY = 50_000
WAITING_AT_MOST = 10_000
BROKERS = {"memory": "memory://", "sqlite": "sqlite:///{tmp}/soak.db"}


async def soak(url: str, total: int = TOTAL) -> tuple[list[tuple[int, float]], int]:
    """(completed tasks, RSS in MB) samples, and how many tasks the store held at the end."""
    app = make_app(url, workers=100, prefetch=500, finished_ttl=2.0, retention_every=1.0)
    await app.start()
    worker = app.engine()
    await worker.start()
    process = psutil.Process()
    batch = [TaskRequest(type=NOOP) for _ in range(100)]
    samples: list[tuple[int, float]] = []
    submitted = 0

    def done() -> int:
        return app.metrics.totals().get("succeeded", 0)

    def sample() -> None:
        samples.append((done(), process.memory_info().rss / 2**20))

    try:
        while done() < total:
            if submitted < total and submitted - done() < WAITING_AT_MOST:
                await app.submit_many(batch)
                submitted += len(batch)
            else:
                await asyncio.sleep(0.005)
            if done() >= (len(samples) + 1) * SAMPLE_EVERY:
                sample()
        await asyncio.sleep(3)  # one more retention round after the last finished
        sample()
        stored = sum(row.count for row in await app.broker.counts())
    finally:
        await worker.stop()
        await app.close()
    return samples, stored


def run(runs: int = 1, progress: Any = print) -> list[dict[str, Any]]:
    """One soak per broker; rows of RSS at each sample (`runs` is ignored: one run)."""
    rows: list[dict[str, Any]] = []
    for name, template in BROKERS.items():
        samples, stored = loop_runner(soak(template.format(tmp=tempfile.mkdtemp())))
        for completed, rss in samples:
            rows.append(row(f"{name}: RSS after {completed:,} tasks (MB)", [rss]))
        after_warmup = [rss for completed, rss in samples if completed >= 200_000]
        spread = (max(after_warmup) - min(after_warmup)) / min(after_warmup) * 100
        rows.append(row(f"{name}: RSS spread after 200,000 tasks (%)", [spread]))
        rows.append(row(f"{name}: tasks stored at the end", [float(stored)]))
        progress(
            f"{name}: RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MB, {spread:.1f}% "
            f"after warm-up, {stored} stored at the end"
        )
    return rows
