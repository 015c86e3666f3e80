"""Broker throughput: enqueue and reserve+settle tasks/s by batch size, per broker URL.

Each figure is the median of `runs` runs (with min and max), every run on a fresh broker (for
SQLite a fresh file in a fresh temporary directory, default synchronous=FULL). Tasks are built
before the clock starts, so the figures are the broker's, not `new_task`'s.

- enqueue: `callers` coroutines issue `enqueue(batch)` calls back to back, so up to `callers`
  calls are in flight at once (what lets a group-committing broker share one fsync).
- reserve+settle: the broker is filled first (untimed); then `consumers` coroutines each loop
  `reserve(limit=batch)` -> `settle(succeeded outcome per lease)` until the queue is empty.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taskengine.brokers import BrokerBackend, open_broker
from taskengine.model import ResultStatus, Task, TaskResult
from taskengine.model.outcome import succeeded
from taskengine.model.task import new_task

BATCHES = (1, 10, 100, 1_000)
OPERATIONS = ("enqueue", "reserve+settle")
LEASE_FOR = 300.0
FILL_BATCH = 1_000
SQLITE_URL = "sqlite:///{tmp}/bench.db"


@dataclass(frozen=True)
class Config:
    """What one `make bench` measures."""

    # "{tmp}" is a fresh temporary directory per run: every SQLite run starts on a new file.
    urls: tuple[str, ...] = (SQLITE_URL, "memory://")
    batches: tuple[int, ...] = BATCHES
    runs: int = 3
    callers: int = 8  # enqueue calls in flight at once
    consumers: int = 8  # concurrent reserve+settle loops
    tasks_batch_1: int = 2_000
    tasks_batch_n: int = 20_000
    payload_bytes: int = 100
    temp_parent: str | None = None  # where SQLite files go; None: the system temp dir
    suite: str = "all"  # broker, runtime or all

    def tasks_for(self, batch: int) -> int:
        """How many tasks one run moves for this batch size."""
        total = self.tasks_batch_1 if batch == 1 else self.tasks_batch_n
        return max(total, batch * self.callers)


@dataclass
class Figure:
    """One (broker, operation, batch) cell: tasks/s of each run and their summary."""

    broker: str
    operation: str
    batch: int
    tasks: int
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "median": self.median,
            "min": min(self.rates),
            "max": max(self.rates),
        }


def machine_facts(temp_parent: str | None) -> dict[str, Any]:
    """The facts a reader needs to compare figures: CPU, Python, SQLite, where files went."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parent = temp_parent or tempfile.gettempdir()
    work = Path(__file__).resolve().parent
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "temp_dir": parent,
        "temp_dir_same_device_as_repo": os.stat(parent).st_dev == os.stat(work).st_dev,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # other work skews the figures
    }


def make_tasks(count: int, now: float, payload_bytes: int) -> list[Task]:
    """`count` tasks due at `now`, with distinct ids and a payload of about `payload_bytes`."""
    blob = "x" * payload_bytes
    return [
        new_task("bench.noop", {"n": n, "blob": blob}, now=now, task_id=f"bench-{n:012d}")
        for n in range(count)
    ]


def chunks(tasks: list[Task], size: int) -> Iterator[list[Task]]:
    """Consecutive slices of `size` tasks."""
    for start in range(0, len(tasks), size):
        yield tasks[start : start + size]


async def _in_flight(count: int, work: Callable[[], Awaitable[None]]) -> float:
    """Run `count` copies of `work` at once; return the elapsed seconds."""
    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(count)))
    return time.perf_counter() - started


async def measure_enqueue(
    broker: BrokerBackend, batch: int, tasks: list[Task], callers: int
) -> float:
    """Enqueue `tasks` in batches with `callers` calls in flight; return tasks/s."""
    pending = chunks(tasks, batch)
    now = time.time()

    async def caller() -> None:
        for chunk in pending:  # a shared iterator: each chunk goes to exactly one caller
            results = await broker.enqueue(chunk, now)
            if len(results) != len(chunk) or not all(r.created for r in results):
                raise RuntimeError("enqueue did not create every task")

    elapsed = await _in_flight(callers, caller)
    return len(tasks) / elapsed


async def measure_reserve_settle(
    broker: BrokerBackend, batch: int, tasks: list[Task], consumers: int
) -> float:
    """Fill the broker (untimed), then drain it with `consumers` reserve+settle loops."""
    now = time.time()
    for chunk in chunks(tasks, FILL_BATCH):
        await broker.enqueue(chunk, now)
    done = 0

    async def consumer(worker_id: str) -> None:
        nonlocal done
        while True:
            now = time.time()
            leases = await broker.reserve(worker_id, batch, LEASE_FOR, now)
            if not leases:
                return
            outcomes = [
                succeeded(
                    lease,
                    TaskResult(
                        task_id=lease.task_id,
                        status=ResultStatus.SUCCESS,
                        worker_id=worker_id,
                        completed_at=now,
                    ),
                )
                for lease in leases
            ]
            applied = await broker.settle(outcomes, now)
            if not all(applied):
                raise RuntimeError("settle refused a current lease")
            done += len(leases)

    names = iter(range(consumers))
    elapsed = await _in_flight(consumers, lambda: consumer(f"bench-worker-{next(names)}"))
    if done != len(tasks):
        raise RuntimeError(f"drained {done} of {len(tasks)} tasks")
    return len(tasks) / elapsed


async def one_run(url: str, operation: str, batch: int, config: Config) -> float:
    """One run on a fresh broker; return tasks/s."""
    temp: str | None = None
    if "{tmp}" in url:
        temp = tempfile.mkdtemp(prefix="taskengine-bench-", dir=config.temp_parent)
        url = url.replace("{tmp}", temp)
    tasks = make_tasks(config.tasks_for(batch), time.time(), config.payload_bytes)
    broker = open_broker(url)
    await broker.start()
    try:
        if operation == "enqueue":
            return await measure_enqueue(broker, batch, tasks, config.callers)
        return await measure_reserve_settle(broker, batch, tasks, config.consumers)
    finally:
        await broker.close()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def broker_name(url: str) -> str:
    """The scheme of a URL, with its options if any ("sqlite?synchronous=OFF")."""
    scheme = url.split(":", 1)[0]
    query = url.partition("?")[2]
    return f"{scheme}?{query}" if query else scheme


async def run(config: Config, progress: Callable[[str], None] = print) -> list[Figure]:
    """Measure every (broker, operation, batch) cell `config.runs` times."""
    figures: list[Figure] = []
    for url in config.urls:
        for operation in OPERATIONS:
            for batch in config.batches:
                figure = Figure(broker_name(url), operation, batch, config.tasks_for(batch))
                for _ in range(config.runs):
                    figure.rates.append(await one_run(url, operation, batch, config))
                progress(
                    f"  {figure.broker:<7} {operation:<15} batch {batch:>5}: "
                    f"{figure.median:>10,.0f} tasks/s"
                )
                figures.append(figure)
    return figures


def table(figures: list[Figure], config: Config) -> str:
    """A Markdown table of the figures."""
    lines = [
        f"| broker | operation | batch | tasks/run | tasks/s (median of {config.runs}) "
        "| min | max |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        lines.append(
            f"| {f.broker} | {f.operation} | {f.batch:,} | {f.tasks:,} | {f.median:,.0f} "
            f"| {min(f.rates):,.0f} | {max(f.rates):,.0f} |"
        )
    return "\n".join(lines)
