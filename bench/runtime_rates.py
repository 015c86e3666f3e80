"""End-to-end engine figures: no-op throughput, the 10 ms I/O workload, CPU speed-up.

Every figure runs a real worker pool (fetcher, runner, completer) against a real broker; the
clock stops when the in-process metrics have counted every task as succeeded.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from taskengine.app import App, TaskRequest
from taskengine.settings import Settings

NOOP = "bench.noop"
SLEEP = "bench.sleep10ms"
SPIN = "bench.spin"
SPIN_ROUNDS = 2_000_000
SHA = {"size": 200 * 1024, "rounds": 40}


@dataclass
class Result:
    """One figure: the value of each run and their summary."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "median": statistics.median(self.values),
            "min": min(self.values),
            "max": max(self.values),
        }


def make_app(url: str, **settings: Any) -> App:
    """An app with the bench task types (and the built-ins for the CPU figures)."""
    app = App(settings=Settings(broker_url=url, max_depth=10**8, **settings), builtins=True)

    @app.task(NOOP)
    async def noop(payload: Any) -> None:
        return None

    @app.task(SLEEP)
    async def sleep_10ms(payload: Any) -> None:
        await asyncio.sleep(0.01)

    app.task(SPIN, executor="process")(spin)
    return app


def spin(payload: int) -> int:
    """Pure-Python CPU work (holds the GIL): a loop of `payload` rounds."""
    total = 0
    for n in range(payload):
        total += n * n % 7
    return total


async def _until_done(app: App, count: int) -> None:
    while app.metrics.totals().get("succeeded", 0) < count:  # noqa: ASYNC110 (polling a counter)
        await asyncio.sleep(0.001)


async def throughput(url: str, count: int, *, producer: bool, **settings: Any) -> float:
    """No-op tasks/s: `producer` submits while the pool runs (end to end), else a full queue
    is drained (drain rate)."""
    app = make_app(url, **settings)
    await app.start()
    batch = [TaskRequest(type=NOOP) for _ in range(100)]
    if not producer:
        for _ in range(count // 100):
            await app.submit_many(batch)
    worker = app.engine()
    started = time.perf_counter()
    await worker.start()
    if producer:
        for _ in range(count // 100):
            await app.submit_many(batch)
    await _until_done(app, count)
    elapsed = time.perf_counter() - started
    await worker.stop()
    await app.close()
    return count / elapsed


async def io_workload(url: str, count: int = 5000, workers: int = 100) -> float:
    """Seconds for `workers` workers to drain `count` tasks that each sleep 10 ms."""
    app = make_app(url, workers=workers, prefetch=workers * 2)
    await app.start()
    await app.submit_many([TaskRequest(type=SLEEP) for _ in range(count)])
    worker = app.engine()
    started = time.perf_counter()
    await worker.start()
    await _until_done(app, count)
    elapsed = time.perf_counter() - started
    await worker.stop()
    await app.close()
    return elapsed


async def cpu_workload(
    url: str, processes: int, count: int = 16, task_type: str = "cpu.sha256", payload: Any = None
) -> float:
    """Seconds to run `count` CPU tasks on `processes` (default: SHA-256, 200 KiB, 40 rounds)."""
    app = make_app(url, workers=8, process_pool=processes)
    await app.start()
    worker = app.engine()
    await worker.start()  # the process pool starts here, outside the timing
    payload = SHA if payload is None else payload
    started = time.perf_counter()
    await app.submit_many([TaskRequest(type=task_type, payload=payload) for _ in range(count)])
    await _until_done(app, count)
    elapsed = time.perf_counter() - started
    await worker.stop()
    await app.close()
    return elapsed


async def mixed_workload(url: str, count: int = 5_000) -> float:
    """Seconds to drain a mix: 70% no-op, 25% 10 ms I/O, 5% SHA-256 (200 KiB, 1 round)."""
    app = make_app(url, workers=100, prefetch=200, process_pool=2)
    await app.start()
    worker = app.engine()
    await worker.start()  # the process pool starts outside the timing
    kinds = [TaskRequest(type=NOOP)] * 14 + [TaskRequest(type=SLEEP)] * 5
    kinds.append(TaskRequest(type="cpu.sha256", payload={"size": 200 * 1024, "rounds": 1}))
    started = time.perf_counter()
    await app.submit_many([kinds[n % len(kinds)] for n in range(count)])
    await _until_done(app, count)
    elapsed = time.perf_counter() - started
    await worker.stop()
    await app.close()
    return elapsed


async def run(runs: int = 3, progress: Any = print) -> list[Result]:
    """Every runtime figure, `runs` times each."""
    tuned = {"workers": 100, "prefetch": 500}
    results: list[Result] = []
    for broker, count in (("memory", 100_000), ("sqlite", 50_000)):
        for mode in ("end-to-end", "drain"):
            result = Result(f"{broker} no-op {mode}", "tasks/s")
            for _ in range(runs):
                url = "memory://" if broker == "memory" else _sqlite_url()
                value = await throughput(url, count, producer=mode == "end-to-end", **tuned)
                result.values.append(value)
            progress(f"{result.name}: {statistics.median(result.values):,.0f} tasks/s")
            results.append(result)
    for broker in ("memory", "sqlite"):
        result = Result(f"{broker} I/O 5,000 x 10 ms, 100 workers (ideal 0.5 s)", "s")
        for _ in range(runs):
            url = "memory://" if broker == "memory" else _sqlite_url()
            result.values.append(await io_workload(url))
        progress(f"{result.name}: {statistics.median(result.values):.3f} s")
        results.append(result)
    cpu_kinds = {
        "CPU 16 x SHA-256 200 KiB x 40": ("cpu.sha256", SHA),
        f"CPU 16 x pure-Python loop of {SPIN_ROUNDS:,}": (SPIN, SPIN_ROUNDS),
    }
    for label, (task_type, payload) in cpu_kinds.items():
        for processes in (1, 2):
            result = Result(f"{label}, {processes} process(es)", "s")
            for _ in range(runs):
                seconds = await cpu_workload(_sqlite_url(), processes, 16, task_type, payload)
                result.values.append(seconds)
            progress(f"{result.name}: {statistics.median(result.values):.3f} s")
            results.append(result)
    for broker in ("memory", "sqlite"):
        result = Result(f"{broker} mixed 5,000 (70% no-op, 25% 10 ms I/O, 5% SHA-256)", "s")
        for _ in range(runs):
            url = "memory://" if broker == "memory" else _sqlite_url()
            result.values.append(await mixed_workload(url))
        progress(f"{result.name}: {statistics.median(result.values):.3f} s")
        results.append(result)
    peak = Result("peak RSS of this process over the suite", "MB")
    peak.values.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    results.append(peak)
    return results


def _sqlite_url() -> str:
    return f"sqlite:///{tempfile.mkdtemp(prefix='te-bench-')}/bench.db"


def table(results: list[Result]) -> str:
    """A plain-text table of medians with min and max."""
    lines = [f"{'figure':<58} {'median':>12} {'min':>12} {'max':>12}"]
    for r in results:
        d = r.as_dict()
        fmt = (
            "{:>12,.0f}" if r.unit == "tasks/s" else "{:>12.1f}" if r.unit == "MB" else "{:>12.3f}"
        )
        cells = " ".join(fmt.format(d[k]) for k in ("median", "min", "max"))
        lines.append(f"{r.name:<58} {cells} {r.unit}")
    return "\n".join(lines)
