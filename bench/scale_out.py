"""Scale-out: end-to-end no-op throughput with 1, 2 and 4 `taskengine worker` processes on one
shared broker (Redis, PostgreSQL, SQLite), the producer running at the same time.

The producer (this process) submits COUNT no-op tasks in batches while the workers drain them;
the clock runs from the first submission until the broker counts every task as succeeded.
Alongside the rate, where the two cores went over that window: how busy the whole machine was,
and how many cores the worker processes, the producer and the broker server used.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from typing import Any

import psutil

from bench import row
from taskengine.brokers import open_broker
from taskengine.model import TaskState, new_task

COUNT = 40_000
BATCH = 500
APP = "bench.scale_app:app"
NOOP = "bench.noop"
BROKERS = {
    "redis": "redis://127.0.0.1:6379/0?namespace=bench{uid}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test?schema=bench{uid}",
    "nats": "nats://127.0.0.1:4222?stream=bench{uid}",
    "sqlite": "sqlite:///{tmp}/scale.db",
}


async def _succeeded(broker: Any) -> int:
    rows = await broker.counts()
    return sum(r.count for r in rows if r.state is TaskState.SUCCEEDED)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


PORTS = {"redis": 6379, "postgresql": 5432, "nats": 4222}


def _cpu(pid: int | None, *, children: bool = True) -> float:
    """CPU seconds used so far by a process and its children (0 when there is none)."""
    if pid is None:
        return 0.0
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *(root.children(recursive=True) if children else [])]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _busy(before: Any, after: Any) -> float:
    """Share of all cores not idle between two `psutil.cpu_times()` readings, in %."""
    spent = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 100.0 * (spent - idle) / spent if spent else 0.0


def _server_pid(port: int | None) -> int | None:
    """The process listening on `port` (the broker server), if any."""
    for conn in psutil.net_connections("tcp"):
        if port is not None and conn.status == "LISTEN" and conn.laddr.port == port:
            return conn.pid
    return None


def one_run(url: str, processes: int, port: int | None) -> tuple[float, ...]:
    """(tasks/s, machine CPU busy %, then cores used by the workers, the producer and the
    broker server) for one run: start the workers, then produce and wait for every success."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TASKENGINE_PREFETCH": "500"}
    command = [sys.executable, "-m", "taskengine", "--broker", url, "--app", APP, "worker"]
    asyncio.run(_prepare(url))  # the storage exists before the workers race to create it
    log = tempfile.NamedTemporaryFile("w+", prefix="scale-workers-", suffix=".log")  # noqa: SIM115
    workers = subprocess.Popen(
        [*command, "--processes", str(processes), "--workers", "100", "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        time.sleep(3)  # the processes are up and waiting
        # the producer is this process, without the workers it started
        readings = [
            partial(_cpu, workers.pid),
            partial(_cpu, os.getpid(), children=False),
            partial(_cpu, _server_pid(port)),
        ]
        machine, before = psutil.cpu_times(), [read() for read in readings]
        try:
            rate = asyncio.run(_produce_and_wait(url))
        except RuntimeError as exc:  # say why: the workers' own words, not a bare timeout
            log.seek(0)
            raise RuntimeError(f"{exc}; the workers logged:\n{log.read()[-4000:]}") from None
        busy = _busy(machine, psutil.cpu_times())
        elapsed = COUNT / rate
        cores = [(read() - was) / elapsed for read, was in zip(readings, before, strict=True)]
        return (rate, busy, *cores)
    finally:
        workers.send_signal(signal.SIGTERM)
        try:
            workers.wait(60)
        except subprocess.TimeoutExpired:
            workers.kill()
        asyncio.run(_drop(url))
        log.close()


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
                counts = [(r.state.value, r.count) for r in await broker.counts()]
                raise RuntimeError(f"{url}: not done within 300 s; the broker counts {counts}")
            await asyncio.sleep(0.05)
        return COUNT / (time.perf_counter() - started)
    finally:
        await broker.close()


async def _drop(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    drop = (
        getattr(broker, "drop_schema", None)
        or getattr(broker, "drop_namespace", None)
        or getattr(broker, "drop_stream", None)
    )
    if drop is not None:
        await drop()
    await broker.close()


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Median of `runs` for each broker and process count."""
    rows = []
    for name, template in BROKERS.items():
        for processes in (1, 2, 4):
            results = []
            for _ in range(runs):
                url = template.format(uid=uuid.uuid4().hex[:8], tmp=tempfile.mkdtemp())
                results.append(one_run(url, processes, PORTS.get(name)))
                rate, busy, workers, producer, server = results[-1]
                progress(
                    f"scale-out {name} x{processes}: {rate:,.0f} tasks/s, machine {busy:.0f}% "
                    f"busy; cores: workers {workers:.2f}, producer {producer:.2f}, "
                    f"server {server:.2f}"
                )
            columns = [list(column) for column in zip(*results, strict=True)]
            label = f"{name}, {processes} worker process(es)"
            names = [" (tasks/s)", ": machine CPU busy (%)", ": workers' CPU (cores)"]
            names += [": producer's CPU (cores)", ": broker server's CPU (cores)"]
            rows += [
                row(label + suffix, column) for suffix, column in zip(names, columns, strict=True)
            ]
    return rows
