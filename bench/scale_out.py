"""Scale-out: end-to-end no-op throughput with 1, 2 and 4 `taskengine worker` processes on one
shared broker (Redis, PostgreSQL, NATS JetStream, SQLite), the producer running at the same time.

The producer (this process) submits COUNT no-op tasks in batches while the workers drain them;
the clock runs from the first submission until the broker counts every task as succeeded.
Alongside the rate, where the two cores went over that window: how busy the whole machine was,
and the CPU the worker processes, the producer and the broker server used, as cores and as
microseconds per task. The server's figure is the run's own: Redis is a redis-server started for
the suite (`private_redis`), NATS a nats-server started for the suite (`private_nats`),
PostgreSQL the backends serving the run's connections (the shared
server's other clients and its background processes are not counted); SQLite has no server.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

from bench import drop_storage, row
from bench.cpu_meter import backends_of, client_ports, cpu_by_pid, spent, tree
from bench.private_nats import private_nats
from bench.private_redis import Server, private_redis
from taskengine.brokers import open_broker
from taskengine.model import TaskState, new_task

COUNT = 40_000
BATCH = 500
APP = "bench.scale_app:app"
NOOP = "bench.noop"
BROKERS = {
    "redis": "redis://127.0.0.1:{port}/0?namespace=bench{uid}",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test?schema=bench{uid}",
    "nats": "nats://127.0.0.1:{nats_port}?stream=bench{uid}",
    "sqlite": "sqlite:///{tmp}/scale.db",
}
POSTGRES = Server(port=5432, pid=None)  # shared: its share is the backends of the run's clients


async def _succeeded(broker: Any) -> int:
    rows = await broker.counts()
    return sum(r.count for r in rows if r.state is TaskState.SUCCEEDED)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Spent(NamedTuple):
    """CPU seconds used over the timed window."""

    workers: float  # the `taskengine worker` supervisor and its processes
    producer: float  # this process
    server: float  # the broker server's processes serving this run


class Figures(NamedTuple):
    """One run's figures, in the order `run` names them."""

    rate: float  # tasks/s
    busy: float  # machine CPU busy, %
    workers_cores: float
    producer_cores: float
    server_cores: float
    workers_us: float  # CPU µs per task
    producer_us: float
    server_us: float


FIGURE_NAMES = (
    " (tasks/s)",
    ": machine CPU busy (%)",
    ": workers' CPU (cores)",
    ": producer's CPU (cores)",
    ": broker server's CPU (cores)",
    ": workers' CPU per task (µs)",
    ": producer's CPU per task (µs)",
    ": broker server's CPU per task (µs)",
)


def figures(count: int, elapsed: float, busy: float, spent: Spent) -> Figures:
    """The rate, and each CPU share both as cores (seconds per second) and µs per task."""
    cores = [seconds / elapsed for seconds in spent]
    per_task = [seconds / count * 1e6 for seconds in spent]
    return Figures(count / elapsed, busy, *cores, *per_task)


def _busy(before: Any, after: Any) -> float:
    """Share of all cores not idle between two `psutil.cpu_times()` readings, in %."""
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 100.0 * (total - idle) / total if total else 0.0


class _Window:
    """Readings of every CPU share at the start and the end of the timed window."""

    def __init__(self, workers: int, server: Server | None) -> None:
        self._workers, self._server = workers, server
        self._unseen = False
        self._start: tuple[Any, ...] = ()
        self._end: tuple[Any, ...] = ()

    def _server_cpu(self) -> dict[int, float]:
        if self._server is None:
            return {}
        if self._server.pid is not None:
            return cpu_by_pid([self._server.pid])
        clients = [*tree(self._workers), os.getpid()]
        ports = client_ports(self._server.port, clients)
        backends = backends_of(self._server.port, ports)
        if ports and not backends:  # another user's processes (not root): no figure, not zero
            self._unseen = True
        return cpu_by_pid(backends)

    def start(self) -> None:
        """Read the server, the workers, the producer, the machine, then start the clock."""
        server, workers = self._server_cpu(), cpu_by_pid(tree(self._workers))
        producer = cpu_by_pid([os.getpid()])
        self._start = (server, workers, producer, psutil.cpu_times(), time.perf_counter())

    def end(self) -> None:
        """Stop the clock, then read in the reverse order (the readings cost no window time)."""
        clock, machine = time.perf_counter(), psutil.cpu_times()
        producer, workers = cpu_by_pid([os.getpid()]), cpu_by_pid(tree(self._workers))
        self._end = (self._server_cpu(), workers, producer, machine, clock)

    def figures(self, count: int) -> Figures:
        """The run's figures from the two readings."""
        (server0, workers0, producer0, machine0, clock0) = self._start
        (server1, workers1, producer1, machine1, clock1) = self._end
        server = math.nan if self._unseen else spent(server0, server1)
        used = Spent(spent(workers0, workers1), spent(producer0, producer1), server)
        return figures(count, clock1 - clock0, _busy(machine0, machine1), used)


def one_run(url: str, processes: int, server: Server | None) -> Figures:
    """One run's figures: start the workers, then produce and wait for every success."""
    # this tree's src first: the virtualenv's own path may name another tree's (a worktree's
    # workers would run that tree's code)
    path = os.pathsep.join([os.path.join(ROOT, "src"), ROOT])
    env = {**os.environ, "PYTHONPATH": path, "TASKENGINE_PREFETCH": "500"}
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
        window = _Window(workers.pid, server)
        try:
            asyncio.run(_produce_and_wait(url, window.start, window.end))
        except RuntimeError as exc:  # say why: the workers' own words, not a bare timeout
            log.seek(0)
            raise RuntimeError(f"{exc}; the workers logged:\n{log.read()[-4000:]}") from None
        return window.figures(COUNT)
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


async def _produce_and_wait(
    url: str, on_start: Callable[[], None], on_done: Callable[[], None]
) -> None:
    """Submit COUNT tasks and poll until all succeeded, between `on_start` and `on_done`."""
    broker = open_broker(url, max_depth=10**8)
    await broker.start()
    try:
        now = time.time()
        batches = [
            [new_task(NOOP, None, now=now) for _ in range(BATCH)] for _ in range(COUNT // BATCH)
        ]
        on_start()  # after the producer's connections exist: their backends are counted
        started = time.perf_counter()
        for batch in batches:
            await broker.enqueue(batch, time.time())
        while await _succeeded(broker) < COUNT:
            if time.perf_counter() > started + 300:
                counts = [(r.state.value, r.count) for r in await broker.counts()]
                raise RuntimeError(f"{url}: not done within 300 s; the broker counts {counts}")
            await asyncio.sleep(0.05)
        on_done()  # before close: the producer's backends are still there to read
    finally:
        await broker.close()


async def _drop(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    await drop_storage(broker)
    await broker.close()


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Median of `runs` for each broker and process count."""
    with private_redis() as redis_server, private_nats() as nats_server:
        servers = {
            "redis": redis_server,
            "postgresql": POSTGRES,
            "nats": nats_server,
            "sqlite": None,
        }
        rows = []
        for name, template in BROKERS.items():
            for processes in (1, 2, 4):
                results = []
                for _ in range(runs):
                    url = template.format(
                        uid=uuid.uuid4().hex[:8],
                        tmp=tempfile.mkdtemp(),
                        port=redis_server.port,
                        nats_port=nats_server.port,
                    )
                    results.append(one_run(url, processes, servers[name]))
                    progress(_line(name, processes, results[-1]))
                columns = [list(column) for column in zip(*results, strict=True)]
                label = f"{name}, {processes} worker process(es)"
                rows += [
                    row(label + suffix, column)
                    for suffix, column in zip(FIGURE_NAMES, columns, strict=True)
                ]
    return rows


def _line(name: str, processes: int, f: Figures) -> str:
    return (
        f"scale-out {name} x{processes}: {f.rate:,.0f} tasks/s, machine {f.busy:.0f}% busy, "
        f"load {os.getloadavg()[0]:.1f}; CPU per task (cores): workers {f.workers_us:.1f} µs "
        f"({f.workers_cores:.2f}), producer {f.producer_us:.1f} µs ({f.producer_cores:.2f}), "
        f"server {f.server_us:.1f} µs ({f.server_cores:.2f})"
    )
