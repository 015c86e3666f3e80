"""Measure the engine on this machine: submit, drain and end-to-end rates of small workloads.

Every figure runs the real engine in this process (App, broker, worker pool); a run's clock
stops when the App's own metrics have counted every task as succeeded. `taskengine bench`
prints the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from taskengine.app import App, TaskRequest
from taskengine.errors import ConfigurationError, TaskEngineError
from taskengine.settings import Settings

NOOP = "bench.noop"
SLEEP = "bench.sleep"
SLEEP_SECONDS = 0.01
BATCH = 100  # tasks per submit_many call
FIGURES = ("submit", "drain", "end-to-end")
FRESH_SCHEMES = ("memory", "sqlite")  # storage the bench can make anew for every run
STALL_AFTER = 30.0  # seconds without a finished task before a run is abandoned
POLL_EVERY = 0.001
MAX_DEPTH = 10**9  # the bench fills the queue on purpose: never refuse it

Timer = Callable[[], float]
Connect = Callable[[App], AbstractAsyncContextManager[App]]


class BenchmarkError(TaskEngineError):
    """A run could not finish: a task did not succeed, or none finished for too long."""

    code = "benchmark_failed"


@dataclass(frozen=True)
class Workload:
    """One kind of task to measure, with its default size."""

    name: str
    task_type: str
    default_tasks: int
    prefetch_per_worker: int
    summary: str


WORKLOADS = {
    "noop": Workload("noop", NOOP, 20_000, 5, "tasks that do nothing"),
    "io": Workload("io", SLEEP, 2_000, 2, f"tasks that sleep {SLEEP_SECONDS * 1000:g} ms"),
}


@dataclass(frozen=True)
class Plan:
    """What to measure: the broker, the workloads, tasks per run, runs and pool size."""

    broker_url: str
    workloads: tuple[Workload, ...]
    tasks: int | None = None  # None: each workload's default
    runs: int = 3
    workers: int = 100

    def count(self, workload: Workload) -> int:
        """Tasks per run of `workload`."""
        return self.tasks if self.tasks is not None else workload.default_tasks

    @property
    def total_tasks(self) -> int:
        """Tasks submitted plus tasks finished over the whole plan (for a progress bar)."""
        return sum(len(FIGURES) * self.runs * self.count(w) for w in self.workloads)


@dataclass
class Figure:
    """One measured rate (tasks/s) of one workload: the value of each run."""

    workload: str
    name: str
    values: list[float] = field(default_factory=list)
    unit: str = "tasks/s"

    @property
    def label(self) -> str:
        """The figure's name in a table, e.g. 'noop drain'."""
        return f"{self.workload} {self.name}"

    def as_dict(self) -> dict[str, Any]:
        """The figure with its median, min and max, ready for JSON."""
        return {
            "workload": self.workload,
            "figure": self.name,
            "unit": self.unit,
            "median": statistics.median(self.values),
            "min": min(self.values),
            "max": max(self.values),
            "values": list(self.values),
        }


class Progress(Protocol):
    """Where a running plan reports what it is doing."""

    def begin(self, label: str) -> None:
        """A new phase starts (e.g. 'noop run 1/3: drain')."""

    def advance(self, tasks: int) -> None:
        """`tasks` more were submitted or finished."""


class NoProgress:
    """Reports nothing."""

    def begin(self, label: str) -> None:
        """Ignore the phase."""

    def advance(self, tasks: int) -> None:
        """Ignore the count."""


@dataclass(frozen=True)
class Target:
    """Where one run puts its tasks."""

    url: str
    queue: str
    only_queue: bool  # a shared broker: the worker takes this run's queue only


@contextlib.contextmanager
def fresh_target(url: str) -> Iterator[Target]:
    """Storage for one run: a new memory broker, a new SQLite file next to the given one
    (removed afterwards), or the shared broker as is with a queue of the run's own."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        yield Target(url, "bench", only_queue=False)
    elif parts.scheme == "sqlite":
        parent = Path(parts.path[1:] if parts.path.startswith("/") else parts.path).parent
        if not parent.is_dir():
            raise ConfigurationError(f"cannot benchmark SQLite in {parent}: no such directory")
        directory = Path(tempfile.mkdtemp(prefix="taskengine-bench-", dir=parent)).resolve()
        try:
            query = f"?{parts.query}" if parts.query else ""  # e.g. synchronous=NORMAL
            yield Target(f"sqlite:///{directory / 'bench.db'}{query}", "bench", only_queue=False)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    else:
        yield Target(url, f"bench-{uuid.uuid4().hex[:12]}", only_queue=True)


def make_app(target: Target, workers: int, prefetch: int) -> App:
    """An App with only the bench task types, on the run's storage and queue."""
    settings = Settings(
        broker_url=target.url, max_depth=MAX_DEPTH, workers=workers, prefetch=prefetch
    )
    app = App(settings=settings, builtins=False)

    @app.task(NOOP, queue=target.queue)
    async def noop(payload: Any) -> None:
        return None

    @app.task(SLEEP, queue=target.queue)
    async def sleep(payload: Any) -> None:
        await asyncio.sleep(SLEEP_SECONDS)

    return app


async def measure(
    plan: Plan,
    progress: Progress | None = None,
    *,
    connect: Connect | None = None,
    timer: Timer = time.perf_counter,
) -> list[Figure]:
    """Run the plan: for each workload, its submit, drain and end-to-end rates over `runs`."""
    bench = _Bench(plan, progress or NoProgress(), connect or _as_is, timer)
    figures: list[Figure] = []
    for workload in plan.workloads:
        found = {name: Figure(workload.name, name) for name in FIGURES}
        for run in range(1, plan.runs + 1):
            label = f"{workload.name} run {run}/{plan.runs}"
            submit, drain = await bench.submit_then_drain(workload, label)
            found["submit"].values.append(submit)
            found["drain"].values.append(drain)
            found["end-to-end"].values.append(await bench.end_to_end(workload, label))
        figures.extend(found.values())
    return figures


def _as_is(app: App) -> AbstractAsyncContextManager[App]:
    return app


class _Bench:
    """The runs of one plan."""

    def __init__(self, plan: Plan, progress: Progress, connect: Connect, timer: Timer) -> None:
        self.plan = plan
        self.progress = progress
        self.connect = connect
        self.timer = timer

    @contextlib.asynccontextmanager
    async def _app(self, workload: Workload) -> AsyncIterator[tuple[App, Target]]:
        workers = self.plan.workers
        with fresh_target(self.plan.broker_url) as target:
            app = make_app(target, workers, workers * workload.prefetch_per_worker)
            async with self.connect(app):
                yield app, target

    async def submit_then_drain(self, workload: Workload, label: str) -> tuple[float, float]:
        """Submit rate with no worker running, then the drain rate of that full queue."""
        count = self.plan.count(workload)
        async with self._app(workload) as (app, target):
            self.progress.begin(f"{label}: submit")
            started = self.timer()
            await self._submit(app, workload, count)
            submit_rate = count / (self.timer() - started)
            self.progress.begin(f"{label}: drain")
            started = self.timer()
            await app.engine(queues=self._queues(target)).start()
            await self._until_succeeded(app, count)
            return submit_rate, count / (self.timer() - started)

    async def end_to_end(self, workload: Workload, label: str) -> float:
        """Tasks/s with the producer submitting while the workers run."""
        count = self.plan.count(workload)
        async with self._app(workload) as (app, target):
            self.progress.begin(f"{label}: end-to-end")
            started = self.timer()
            await app.engine(queues=self._queues(target)).start()
            await self._submit(app, workload, count, report=False)
            await self._until_succeeded(app, count)
            return count / (self.timer() - started)

    @staticmethod
    def _queues(target: Target) -> tuple[str, ...] | None:
        return (target.queue,) if target.only_queue else None

    async def _submit(self, app: App, workload: Workload, count: int, report: bool = True) -> None:
        batch = [TaskRequest(type=workload.task_type)] * BATCH
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            await app.submit_many(batch[:size])
            if report:
                self.progress.advance(size)

    async def _until_succeeded(self, app: App, count: int) -> None:
        done = 0
        last_change = self.timer()
        while done < count:
            await asyncio.sleep(POLL_EVERY)
            totals = app.metrics.totals()
            others = {label: n for label, n in totals.items() if label != "succeeded"}
            if others:
                raise BenchmarkError(f"bench tasks did not all succeed: {others}")
            now_done = totals.get("succeeded", 0)
            if now_done != done:
                self.progress.advance(now_done - done)
                done, last_change = now_done, self.timer()
            elif self.timer() - last_change > STALL_AFTER:
                raise BenchmarkError(
                    f"no bench task finished for {STALL_AFTER:g} s ({done} of {count} done); "
                    "is another worker taking them?"
                )
