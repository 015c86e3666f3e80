"""Submit → start latency as a user measures it, with where the time goes.

A producer process of its own (`bench.latency_producer`) submits no-op tasks on a fixed
schedule, 100, 500 and 1,000 tasks/s offered for 5 s, either one per `app.submit` or ten per
`app.submit_many`; `taskengine worker --processes 2 --workers 100` (`bench.latency_app`) runs
them. The clock starts before the submit call and stops at the first line of the handler
(`perf_counter`, the machine's CLOCK_MONOTONIC, so the processes' readings compare). The first
0.5 s of tasks are warm-up. The memory broker cannot be shared between processes: its producer
and 100 workers share one process.

Each task's delay splits into stages: the submit call (client, broker script or statement,
reply), the wake-up (from the submit's return to the start of the reserve that handed the task
out: pub/sub, NOTIFY or the data_version poll, and the fetcher's turn on the loop), the reserve
round trip, and the hand-off (from the reserve's return to the handler's first line: the
worker's buffer, a free worker coroutine, the executor). A stage is negative when a reserve
already in flight took a task that landed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import taskengine
from bench import drop_storage, loop_runner, row
from taskengine import App, TaskRequest
from taskengine.brokers import open_broker
from taskengine.model import Priority, TaskState

RATES = (100, 500, 1_000)  # tasks/s offered
BATCHES = (1, 10)  # tasks per submit call
SECONDS = 5.0
WARMUP = 0.5
PROCESSES, WORKERS = 2, 100
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The processes import the engine this process imported (an A/B runs two source trees).
SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(taskengine.__file__)))
# The brokers measured, by name; a new broker is one line here ({tmp}: a fresh directory,
# {uid}: a fresh name for the run's namespace, schema or stream).
BROKERS = {
    "memory": "memory://",
    "sqlite": "sqlite:///{tmp}/latency.db",
    "redis": "redis://127.0.0.1:6379/0?namespace=lat{uid}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test?schema=lat{uid}",
    "nats": "nats://127.0.0.1:4222?stream=lat{uid}",
}
# Measured only when named (--broker): what a setting changes on the path.
EXTRA = {"sqlite-normal": "sqlite:///{tmp}/latency.db?synchronous=NORMAL"}
STAGES = ("submit", "wake", "reserve", "hand-off")


def delays(submits: Sequence[list[Any]], marks: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per task after the warm-up, in ms: the whole delay ("total") and each stage; and the
    fetchers' reserves per task over those tasks ("reserves", "empty reserves": one value)."""
    out: dict[str, list[float]] = {"total": [], **{stage: [] for stage in STAGES}}
    first = submits[0][1] + WARMUP if submits else 0.0
    counters: dict[float, list[tuple[float, float]]] = {}  # process -> (reserves, empty)
    for task_id, began, returned in submits:
        if began < first:
            continue
        started, reserve_began, reserve_returned = marks[task_id][:3]
        if len(marks[task_id]) >= 6:
            reserves, empty = marks[task_id][4:6]
            counters.setdefault(marks[task_id][3], []).append((reserves, empty))
        out["total"].append((started - began) * 1000)
        if not math.isnan(reserve_began):
            out["submit"].append((returned - began) * 1000)
            out["wake"].append((reserve_began - returned) * 1000)
            out["reserve"].append((reserve_returned - reserve_began) * 1000)
            out["hand-off"].append((started - reserve_returned) * 1000)
    if counters and out["total"]:
        spans = [(max(c)[0] - min(c)[0], max(c)[1] - min(c)[1]) for c in counters.values()]
        out["reserves"] = [sum(s[0] for s in spans) / len(out["total"])]
        out["empty reserves"] = [sum(s[1] for s in spans) / len(out["total"])]
    return out


async def _marks(url: str, ids: list[str]) -> dict[str, list[float]]:
    """Wait (at most 120 s) until every task succeeded; return each handler's marks."""
    broker = open_broker(url)
    await broker.start()
    try:
        deadline = time.monotonic() + 120
        marks: dict[str, list[float]] = {}
        pending = ids
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: {len(pending)} tasks not done within 120 s")
            for start in range(0, len(pending), 500):
                chunk = pending[start : start + 500]
                for task_id, record in zip(chunk, await broker.get(chunk), strict=True):
                    if record is not None and record.state is TaskState.SUCCEEDED:
                        assert record.result is not None
                        marks[task_id] = record.result.data
            pending = [task_id for task_id in pending if task_id not in marks]
            if pending:
                await asyncio.sleep(0.2)
        return marks
    finally:
        await broker.close()


async def _drop_storage(url: str) -> None:
    """Remove the run's namespace or schema (SQLite: its file is in a fresh directory)."""
    broker = open_broker(url)
    await broker.start()
    try:
        await drop_storage(broker)
    finally:
        await broker.close()


async def _prepare_and_wait_for_workers(url: str, workers: subprocess.Popen[bytes]) -> None:
    """Create the storage, then wait until the worker processes have registered."""
    broker = open_broker(url)
    await broker.start()
    try:
        deadline = time.monotonic() + 60
        while len(await broker.workers(time.time() - 60)) < PROCESSES:
            if time.monotonic() > deadline or workers.poll() is not None:
                raise RuntimeError(f"{url}: the worker processes did not start")
            await asyncio.sleep(0.1)
    finally:
        await broker.close()


@contextlib.contextmanager
def _workers(url: str) -> Iterator[None]:
    """`taskengine worker --processes 2` on `url`, registered before the body runs, stopped
    after it; their log is printed if the body fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, ROOT])}
    asyncio.run(open_broker(url).start())  # the storage exists before the processes race
    command = [sys.executable, "-m", "taskengine", "--broker", url]
    with tempfile.TemporaryFile() as log:
        workers = subprocess.Popen(
            [*command, "--app", "bench.latency_app:app", "worker", "--processes", str(PROCESSES),
             "--workers", str(WORKERS), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            asyncio.run(_prepare_and_wait_for_workers(url, workers))
            yield
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            workers.send_signal(signal.SIGTERM)
            try:
                workers.wait(60)
            except subprocess.TimeoutExpired:
                workers.kill()
            asyncio.run(_drop_storage(url))


def one_run(url: str, rate: int, batch: int) -> dict[str, list[float]]:
    """Delays of one run with a producer process and worker processes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, ROOT])}
    with _workers(url):
        produced = subprocess.run(
            [sys.executable, "-m", "bench.latency_producer", url, str(rate), str(SECONDS),
             str(batch)],
            env=env, capture_output=True, check=True, timeout=SECONDS * 4 + 60,
        )  # fmt: skip
        submits = [json.loads(line) for line in produced.stdout.splitlines()]
        marks = asyncio.run(_marks(url, [s[0] for s in submits]))
    return delays(submits, marks)


async def _in_process(url: str, rate: int, batch: int) -> dict[str, list[float]]:
    """Delays of one run with the producer and the workers in this process (memory)."""
    # Imported here: the probe patches the fetcher, which the other suites must not pay for.
    from bench import latency_app
    from bench.latency_producer import produce

    app = App(url, builtins=False)
    app.task("bench.mark")(latency_app.mark)
    await app.start()
    worker = app.engine()
    await worker.start()
    try:
        submits = await produce(app, rate, SECONDS, batch)
        ids = [s[0] for s in submits]
        deadline = time.monotonic() + 120
        while True:
            records = await app.broker.get(ids)
            if all(r is not None and r.state is TaskState.SUCCEEDED for r in records):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: tasks not done within 120 s")
            await asyncio.sleep(0.05)
        marks = {r.id: r.result.data for r in records if r is not None and r.result is not None}
    finally:
        await worker.stop()
        await app.close()
    return delays(submits, marks)


# The priority case: HIGH tasks submitted one at a time while at least BACKLOG LOW tasks wait
# (each LOW task keeps a worker for latency_app.LOW_RUN seconds, so the workers stay busy).
PRIORITY_BROKERS = ("sqlite", "redis")
BACKLOG = 20_000
HIGHS, HIGH_GAP = 200, 0.02  # HIGH tasks per run, seconds between their submits
FILL = 40_000  # LOW tasks queued first: in 4 s of HIGH tasks 200 workers run at most 8,000


async def _queued_low(broker: Any) -> int:
    return sum(
        row.count
        for row in await broker.counts()
        if row.state is TaskState.QUEUED and row.priority is Priority.LOW
    )


async def _high_among_low(url: str) -> tuple[dict[str, list[float]], int, int]:
    """Fill the LOW backlog, then submit HIGH tasks one at a time; return the HIGH tasks'
    delays (as `delays`), and the LOW tasks waiting before and after."""
    app = App(url, builtins=False)
    for name in ("bench.mark", "bench.low"):
        app.task(name)(_noop)  # validation only: the worker processes run them
    await app.start()
    try:
        for _ in range(FILL // 1_000):
            await app.submit_many([TaskRequest(type="bench.low", priority="low")] * 1_000)
        before = await _queued_low(app.broker)
        submits: list[list[Any]] = []
        start = time.perf_counter()
        for n in range(HIGHS):
            wait = start + n * HIGH_GAP - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            began = time.perf_counter()
            task_id = await app.submit("bench.mark", None, priority="high")
            submits.append([task_id, began, time.perf_counter()])
        after = await _queued_low(app.broker)
    finally:
        await app.close()
    marks = await _marks(url, [s[0] for s in submits])
    return delays(submits, marks), before, after


async def _noop(payload: Any) -> None:
    return None


def priority_run(url: str) -> tuple[dict[str, list[float]], int, int]:
    """One run of the priority case with worker processes of their own."""
    with _workers(url):
        return asyncio.run(_high_among_low(url))


def run_priority(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """p50 and p99 of a HIGH task's submit→start while >= BACKLOG LOW tasks wait, per broker,
    median of `runs`."""
    rows = []
    for name in PRIORITY_BROKERS:
        label = f"{name} HIGH among {BACKLOG:,} LOW"
        figures: dict[str, list[float]] = {}
        for _ in range(runs):
            url = BROKERS[name].format(tmp=tempfile.mkdtemp(), uid=uuid.uuid4().hex[:8])
            measured, before, after = priority_run(url)
            delays_ms = measured["total"]
            one = {"p50": _percentile(delays_ms, 50), "p99": _percentile(delays_ms, 99)}
            for stage in STAGES:
                if len(measured[stage]) >= 2:
                    one[f"{stage} p50"] = _percentile(measured[stage], 50)
                    one[f"{stage} p99"] = _percentile(measured[stage], 99)
            for key, value in one.items():
                figures.setdefault(key, []).append(value)
            progress(
                f"{label}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in one.items())
                + f", max {max(delays_ms):.2f} ms; LOW waiting {before:,} before, {after:,} after"
            )
            if after < BACKLOG:
                raise RuntimeError(f"{label}: only {after:,} LOW tasks waited at the end")
        rows += [row(f"{label}: {_unit(key)}", values) for key, values in figures.items()]
    return rows


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def run(
    runs: int = 3,
    progress: Any = print,
    brokers: Sequence[str] = tuple(BROKERS),
    rates: Sequence[int] = RATES,
    batches: Sequence[int] = BATCHES,
    priority: bool = True,
) -> list[dict[str, Any]]:
    """p50 and p99 of submit→start and the p50 of each stage, median of `runs`, per broker,
    rate and batch size; then the priority case (`run_priority`) unless `priority` is False."""
    rows = []
    for name in brokers:
        template = BROKERS.get(name) or EXTRA[name]
        for rate in rates:
            for batch in batches:
                label = f"{name} {rate:,}/s {'single' if batch == 1 else f'batch {batch}'}"
                figures: dict[str, list[float]] = {}
                for _ in range(runs):
                    url = template.format(tmp=tempfile.mkdtemp(), uid=uuid.uuid4().hex[:8])
                    if name == "memory":
                        measured = loop_runner(_in_process(url, rate, batch))
                    else:
                        measured = one_run(url, rate, batch)
                    total = measured["total"]
                    one = {"p50": _percentile(total, 50), "p99": _percentile(total, 99)}
                    for stage in STAGES:
                        if len(measured[stage]) >= 2:
                            one[f"{stage} p50"] = _percentile(measured[stage], 50)
                    for key in ("reserves", "empty reserves"):
                        if key in measured:
                            one[f"{key} per task"] = measured[key][0]
                    for key, value in one.items():
                        figures.setdefault(key, []).append(value)
                    progress(f"{label}: " + ", ".join(f"{k} {v:.2f}" for k, v in one.items()))
                rows += [row(f"{label}: {_unit(key)}", values) for key, values in figures.items()]
    if priority:
        rows += run_priority(runs, progress)
    return rows


def _unit(key: str) -> str:
    """A figure's name with its unit: ms, except the counts per task."""
    return key if key.endswith("per task") else f"{key} (ms)"


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _cell(rows: dict[str, dict[str, Any]], key: str) -> str:
    """A median, with min-max when there were several runs; "-" if not measured."""
    r = rows.get(_unit(key))
    if r is None:
        return "-"
    if len(r["values"]) == 1:
        return f"{r['median']:.2f}"
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.latency [--broker NAME] [--rate N] [--batch N] [--runs N]`: a subset
    of the suite, printed as a Markdown table with the load average before and after each
    case (every case by default)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__)
    parser.add_argument("--broker", action="append", choices=(*BROKERS, *EXTRA), dest="brokers")
    parser.add_argument("--rate", action="append", type=int, dest="rates")
    parser.add_argument("--batch", action="append", type=int, dest="batches")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--priority", action="store_true", help="only the HIGH-among-LOW case (SQLite, Redis)"
    )
    args = parser.parse_args(argv)
    if args.priority:
        print("| case | p50 ms | p99 ms | load before → after |")
        print("|---|---:|---:|---|")
        before = _load()
        rows = run_priority(args.runs, _stderr)
        by_case: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            case, key = r["name"].split(": ", 1)
            by_case.setdefault(case, {})[key] = r
        for case, figures in by_case.items():
            p50, p99 = _cell(figures, "p50"), _cell(figures, "p99")
            print(f"| {case} | {p50} | {p99} | {before} → {_load()} |")
        return
    print(
        "| case | p50 ms | p99 ms | submit | wake | reserve | hand-off | reserves per task"
        " (empty) | load before → after |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.brokers or BROKERS:
        for rate in args.rates or RATES:
            for batch in args.batches or BATCHES:
                before = _load()
                rows = run(args.runs, _stderr, [name], [rate], [batch], priority=False)
                by_key = {r["name"].split(": ", 1)[1]: r for r in rows}
                label = rows[0]["name"].split(": ", 1)[0]
                cells = [_cell(by_key, "p50"), _cell(by_key, "p99")]
                cells += [_cell(by_key, f"{stage} p50") for stage in STAGES]
                reserves = _cell(by_key, "reserves per task")
                cells.append(f"{reserves} ({_cell(by_key, 'empty reserves per task')})")
                print(f"| {label} | {' | '.join(cells)} | {before} → {_load()} |", flush=True)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
