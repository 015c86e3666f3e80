"""Remote control latency (ADR 0036): how soon a `taskengine worker` process honours a drain and
a resume sent the way a user sends them (`Inspector.control`, what `POST
/api/instances/{id}/control` and `taskengine instances drain` call).

One worker process (2 workers, `bench.control_app`) on a private redis-server and on SQLite.
Per repetition the benchmark submits a backlog of 20 ms tasks to a fresh queue, waits until the
worker has started one, sends `drain` and measures, from just before the send:

- *last reserve*: the `started_at` of the last task of that queue the worker ran (its records:
  the broker stamps `started_at` when it reserves the task; tasks reserved but handed back by
  the drain return to queued and do not count). 0 if it started none after the send.
- *reported draining*: when the worker registry (`GET /api/instances`) first says `draining`.

Then it sends `resume` and measures to the first task reserved again (`started_at`). Before each
send it pauses a random fraction of the poll interval (seeded): a resume sent right after the
drain was seen would otherwise fall in step with the worker's control watch and always wait
nearly a whole interval, a pattern of the benchmark's and not of a user's.
Printed: median, p90 (nearest rank) and max in milliseconds over N repetitions, with the load
average. `python -m bench.control_latency [N]` (default 10).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from bench.control_app import NAP, nap
from bench.private_redis import private_redis
from taskengine import App, TaskRequest
from taskengine.brokers import ControlCommand, TaskFilter
from taskengine.model import TaskRecord, TaskState

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "bench.control_app:app"
WORKERS = 2
BACKLOG = 100  # 1 s of work for two workers: the queue never runs dry before the drain
BOUND = 60.0  # s: a wait longer than this is a failure, not a figure
POLL = 0.005  # s between reads while waiting for a change
WATCH_EVERY = 0.5  # s: the worker's control watch (TASKENGINE_CANCEL_POLL_EVERY, its default)
DONE = frozenset({TaskState.RUNNING, TaskState.SUCCEEDED})
FIGURES = ("drain: last reserve", "drain: reported draining", "resume: first reserve")


class Sample(NamedTuple):
    """One repetition's seconds, from just before each send."""

    last_reserve: float
    reported: float
    first_reserve: float


async def _until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(POLL)
    raise RuntimeError(f"not within {BOUND} s: {what}")


async def _records(app: App, queue: str) -> list[TaskRecord]:
    """Every task of `queue` that was reserved and not handed back (running or succeeded)."""
    found: list[TaskRecord] = []
    cursor: str | None = None
    flt = TaskFilter(queues=frozenset({queue}), states=DONE)
    while True:
        page = await app.broker.list_tasks(flt, 500, cursor)
        found += page.items
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _starts(records: list[TaskRecord], instance: str) -> list[float]:
    return [
        r.started_at
        for r in records
        if r.started_at is not None and (r.worker_id or "").startswith(instance)
    ]


async def _draining(app: App, instance: str) -> bool:
    workers = await app.inspector.live_workers(time.time())
    return any(w.draining for w in workers if w.instance == instance)


async def _one(app: App, instance: str, queue: str, rng: random.Random) -> Sample:
    """Drain, then resume, the worker while `queue` holds a backlog."""
    await app.submit_many([TaskRequest(type=NAP, queue=queue) for _ in range(BACKLOG)])

    async def started(since: float) -> list[float]:
        return [t for t in _starts(await _records(app, queue), instance) if t >= since]

    await _until(lambda: started(0.0), "the worker to take the backlog")
    await asyncio.sleep(rng.uniform(0, WATCH_EVERY))  # out of step with the watch
    sent = time.time()
    await app.inspector.control(instance, ControlCommand.DRAIN)
    await _until(lambda: _draining(app, instance), "the worker to report draining")
    reported = time.time() - sent

    async def settled() -> list[TaskRecord] | None:  # handed-back leases are queued again
        records = await _records(app, queue)
        return None if any(r.state is TaskState.RUNNING for r in records) else records or None

    records = await _until(settled, "the drained worker's tasks to finish")
    last = max(_starts(records, instance))
    await asyncio.sleep(rng.uniform(0, WATCH_EVERY))
    resumed = time.time()
    await app.inspector.control(instance, ControlCommand.RESUME)
    first = min(await _until(lambda: started(resumed), "a task taken after the resume"))
    return Sample(max(last - sent, 0.0), reported, first - resumed)


async def _measure(url: str, runs: int, worker: subprocess.Popen[bytes]) -> list[Sample]:
    app = App(url)
    app.task(NAP)(nap)
    async with app:

        async def instance() -> str | None:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode})")
            found = {w.instance for w in await app.inspector.live_workers(time.time())}
            return found.pop() if len(found) == 1 else None

        name: str = await _until(instance, "the worker process to register")
        samples = []
        rng = random.Random(20261203)
        for rep in range(runs):
            samples.append(await _one(app, name, f"ctl{rep}", rng))
            await app.inspector.control(name, ControlCommand.RESUME)  # a no-op when taking
        return samples


@contextmanager
def _worker(url: str, log: Any) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    env["PYTHONPATH"] = ROOT
    command = [sys.executable, "-m", "taskengine", "--broker", url, "--app", APP, "worker"]
    command += ["--workers", str(WORKERS), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)  # our own child, by its pid
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_on(url: str, runs: int) -> list[Sample]:
    with tempfile.TemporaryFile("w+") as log, _worker(url, log) as worker:
        try:
            return asyncio.run(_measure(url, runs, worker))
        except RuntimeError as exc:  # say why: the worker's own words
            log.seek(0)
            raise RuntimeError(f"{url}: {exc}; the worker logged:\n{log.read()[-4000:]}") from None


def p90(values: list[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def rows(broker: str, samples: list[Sample]) -> list[dict[str, Any]]:
    """The figures of one broker, in milliseconds."""
    out = []
    for index, figure in enumerate(FIGURES):
        values = [1000 * s[index] for s in samples]
        out.append(
            {
                "name": f"{broker}: {figure} (ms)",
                "values": values,
                "median": statistics.median(values),
                "p90": p90(values),
                "max": max(values),
            }
        )
    return out


def run(runs: int = 10, progress: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure on Redis and SQLite; one row per broker and figure."""
    found: list[dict[str, Any]] = []
    with private_redis() as server:
        url = f"redis://127.0.0.1:{server.port}/0?namespace=ctl"
        found += rows("redis", _run_on(url, runs))
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        found += rows("sqlite", _run_on(f"sqlite:///{tmp}/control.db", runs))
    for r in found:
        progress(
            f"{r['name']:<40} median {r['median']:7.1f}  p90 {r['p90']:7.1f}  max {r['max']:7.1f}"
        )
    return found


def main() -> None:
    """`python -m bench.control_latency [N]`."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    before = os.getloadavg()
    run(runs)
    after = os.getloadavg()
    print(f"N={runs}; load average (1 min) {before[0]:.2f} before, {after[0]:.2f} after")


if __name__ == "__main__":
    main()
