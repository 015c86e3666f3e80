"""Scale-out: end-to-end no-op throughput with 1, 2 and 4 `taskengine worker` processes on one
shared broker (Redis, PostgreSQL, SQLite), the producer running at the same time.

The producer (this process) submits COUNT no-op tasks in batches while the workers drain them;
the clock runs from the first submission until the broker counts every task as succeeded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from taskengine.brokers import open_broker
from taskengine.model import TaskState, new_task

COUNT = 40_000
BATCH = 500
APP = "bench.scale_app:app"
NOOP = "bench.noop"
BROKERS = {
    "redis": "redis://127.0.0.1:6379/0?namespace=bench{uid}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test?schema=bench{uid}",
    "sqlite": "sqlite:///{tmp}/scale.db",
}


async def _succeeded(broker: Any) -> int:
    rows = await broker.counts()
    return sum(r.count for r in rows if r.state is TaskState.SUCCEEDED)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_run(url: str, processes: int) -> float:
    """Tasks/s for one run: start the workers, then produce and wait for every success."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TASKENGINE_PREFETCH": "500"}
    command = [sys.executable, "-m", "taskengine", "--broker", url, "--app", APP, "worker"]
    asyncio.run(_prepare(url))  # the storage exists before the workers race to create it
    workers = subprocess.Popen(
        [*command, "--processes", str(processes), "--workers", "100", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(3)  # the processes are up and waiting
        return asyncio.run(_produce_and_wait(url))
    finally:
        workers.send_signal(signal.SIGTERM)
        try:
            workers.wait(60)
        except subprocess.TimeoutExpired:
            workers.kill()
        asyncio.run(_drop(url))


async def _prepare(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    await broker.close()


async def _produce_and_wait(url: str) -> float:
    broker = open_broker(url, max_depth=10**8)
    await broker.start()
    try:
        now = time.time()
        batches = [
            [new_task(NOOP, None, now=now) for _ in range(BATCH)] for _ in range(COUNT // BATCH)
        ]
        started = time.perf_counter()
        for batch in batches:
            await broker.enqueue(batch, time.time())
        while await _succeeded(broker) < COUNT:
            if time.perf_counter() > started + 300:
                raise RuntimeError(f"{url}: not done within 300 s")
            await asyncio.sleep(0.05)
        return COUNT / (time.perf_counter() - started)
    finally:
        await broker.close()


async def _drop(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    drop = getattr(broker, "drop_schema", None) or getattr(broker, "drop_namespace", None)
    if drop is not None:
        await drop()
    await broker.close()


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Median of `runs` for each broker and process count."""
    rows = []
    for name, template in BROKERS.items():
        for processes in (1, 2, 4):
            values = []
            for _ in range(runs):
                url = template.format(uid=uuid.uuid4().hex[:8], tmp=tempfile.mkdtemp())
                values.append(one_run(url, processes))
                progress(f"scale-out {name} x{processes}: {values[-1]:,.0f} tasks/s")
            rows.append(
                {
                    "name": f"{name}, {processes} worker process(es) (tasks/s)",
                    "values": values,
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                }
            )
    return rows
