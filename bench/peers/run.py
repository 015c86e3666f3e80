"""Task Engine side by side with Celery, Dramatiq, arq, SAQ, taskiq, Huey and RQ on one Redis.

Run from the repository root (what `make bench-peers` does):

    bench/.peers-venv/bin/python -m bench.peers.run [--systems te-redis,celery] [--runs 3]

For each system and workload it starts the system's own worker command(s) in the configuration
listed in SYSTEMS, and counts completions with `INCR bench:done`, which every task does last.

- noop-drain: N no-op tasks are enqueued first (not timed); then the workers start. The rate
  is counted from the first completion to the last, so worker start-up is left out (it is
  recorded separately as `startup_s`).
- noop-e2e: the workers start and run a warm-up of 200 tasks; then a separate producer process
  enqueues N tasks while they run. Rate = N / (last completion - producer's first enqueue).
- sleep-drain: like noop-drain with tasks that sleep 10 ms; the figure is seconds from the
  first completion to the last.
- latency: the workers start and run a warm-up of 200 tasks; then a separate producer process
  submits one task at a time on a fixed schedule, --latency-rate a second for --latency-seconds
  (500/s for 10 s). Each task carries time.perf_counter() read just before its submit call, and
  its handler's first line reads it again (CLOCK_MONOTONIC: the processes' readings compare);
  the figures are the p50 and p99 of those delays, each the median of the runs.

A run counts only if the counter reaches exactly N and still reads N half a second later.
The benchmark uses a private `redis-server --save '' --appendonly no` on a free port, flushed
before every run, and stops it at the end. Before each system's batch of runs (3 workloads
x --runs) it waits, up to --load-wait seconds, for the 1-minute load average to fall below
--load-below; the JSON records that wait and the load average at the start and end of each run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.peers.common import COUNTER, LATENCY, PRODUCE_END, PRODUCE_START

ROOT = Path(__file__).resolve().parents[2]
PEERS_BIN = ROOT / "bench" / ".peers-venv" / "bin"
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "results"
CHART = ROOT / "docs" / "img" / "peers.png"
WORKLOADS = ("noop-drain", "noop-e2e", "sleep-drain", "latency")
WARMUP = 200


@dataclass
class Ctx:
    """What a worker command needs to know about this run."""

    redis_url: str
    tmp: Path  # fresh per run


Commands = Callable[[str, Ctx], list[list[str]]]


@dataclass
class System:
    name: str
    module: str  # bench.peers.<module>: the tasks and the producer
    project_venv: bool  # Task Engine: run from .venv, peers from bench/.peers-venv
    commands: Commands  # kind ("noop" | "sleep") -> worker processes to start
    config: dict[str, str]  # kind -> the configuration, in words
    packages: tuple[str, ...]
    env: Callable[[Ctx], dict[str, str]] = lambda ctx: {}


def peer(cmd: str) -> str:
    return str(PEERS_BIN / cmd)


def te_broker_redis(ctx: Ctx) -> str:
    return ctx.redis_url.rsplit("/", 1)[0] + "/0?namespace=bench"


def te_broker_sqlite(ctx: Ctx) -> str:
    return f"sqlite:///{ctx.tmp}/bench.db"


def te_commands(broker: Callable[[Ctx], str]) -> Commands:
    def commands(kind: str, ctx: Ctx) -> list[list[str]]:
        return [
            [
                str(PROJECT_PY),
                "-m",
                "taskengine",
                "--broker",
                broker(ctx),
                "--app",
                "bench.peers.te_app:app",
                "worker",
                "--processes",
                "2",
                "--workers",
                "100",
                "--log-level",
                "warning",
            ]
        ]

    return commands


TE_CONFIG = "`taskengine worker --processes 2 --workers 100` (2 processes x 100 coroutines, uvloop)"
CELERY_FLAGS = ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"]


def celery_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    base = [peer("celery"), "-A", "bench.peers.celery_app", "worker", *CELERY_FLAGS]
    if kind == "noop":  # one solo worker per core: twice prefork -c 2's rate here
        return [
            [*base, "-P", "solo", "--prefetch-multiplier", "64", "-n", f"w{i}@%h"] for i in (1, 2)
        ]
    return [[*base, "-P", "gevent", "-c", "100", "-n", f"w{i}@%h"] for i in (1, 2)]


def dramatiq_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    # dramatiq-gevent beat the default threads (-t 8) for no-op tasks too
    return [[peer("dramatiq-gevent"), "bench.peers.dramatiq_app", "-p", "2", "-t", "100"]]


def arq_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    return [[peer("arq"), "bench.peers.arq_app.WorkerSettings"] for _ in range(2)]


def saq_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    return [[peer("saq"), "bench.peers.saq_app.settings", "--workers", "2", "--quiet"]]


def taskiq_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    return [
        [
            peer("taskiq"),
            "worker",
            "bench.peers.taskiq_app:broker",
            "--workers",
            "2",
            "--max-async-tasks",
            "100",
            "--log-level",
            "WARNING",
        ]
    ]


def huey_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    # greenlet workers beat `-k process -w 2` for no-op tasks too
    consume = [peer("python"), "-m", "bench.peers.huey_app", "consume"]
    return [[*consume, "-k", "greenlet", "-w", "100", "-n", "-q"] for _ in range(2)]


RQ_NOOP_WORKERS = 4  # no-op: 421/s with 2, 632/s with 4, 615/s with 8, 492/s with 20
RQ_SLEEP_WORKERS = 20


def rq_commands(kind: str, ctx: Ctx) -> list[list[str]]:
    n = str(RQ_NOOP_WORKERS if kind == "noop" else RQ_SLEEP_WORKERS)
    pool = [peer("rq"), "worker-pool", "-u", ctx.redis_url, "-n", n]
    return [[*pool, "-w", "rq.worker.SimpleWorker", "-q", "bench"]]


SYSTEMS: dict[str, System] = {
    system.name: system
    for system in (
        System(
            "te-redis",
            "te_app",
            True,
            te_commands(te_broker_redis),
            {"noop": TE_CONFIG, "sleep": TE_CONFIG},
            ("task-engine", "redis", "hiredis", "uvloop"),
            lambda ctx: {"BENCH_TE_BROKER": te_broker_redis(ctx)},
        ),
        System(
            "te-sqlite",
            "te_app",
            True,
            te_commands(te_broker_sqlite),
            {
                "noop": TE_CONFIG + "; SQLite file, WAL, synchronous=FULL",
                "sleep": TE_CONFIG + "; SQLite file, WAL, synchronous=FULL",
            },
            ("task-engine", "redis", "hiredis", "uvloop"),
            lambda ctx: {"BENCH_TE_BROKER": te_broker_sqlite(ctx)},
        ),
        System(
            "celery",
            "celery_app",
            False,
            celery_commands,
            {
                "noop": "2 x `celery worker -P solo --prefetch-multiplier 64 "
                "--without-gossip --without-mingle --without-heartbeat`, no result backend",
                "sleep": "2 x `celery worker -P gevent -c 100 --without-gossip --without-mingle "
                "--without-heartbeat`, no result backend",
            },
            ("celery", "kombu", "redis", "gevent"),
        ),
        System(
            "dramatiq",
            "dramatiq_app",
            False,
            dramatiq_commands,
            {
                "noop": "`dramatiq-gevent -p 2 -t 100` (2 processes x 100 greenlets)",
                "sleep": "`dramatiq-gevent -p 2 -t 100` (2 processes x 100 greenlets)",
            },
            ("dramatiq", "redis", "gevent"),
        ),
        System(
            "arq",
            "arq_app",
            False,
            arq_commands,
            {
                "noop": "2 x `arq WorkerSettings`, max_jobs=100, poll_delay=0.05, keep_result=0, "
                "uvloop",
                "sleep": "2 x `arq WorkerSettings`, max_jobs=100, poll_delay=0.05, keep_result=0, "
                "uvloop",
            },
            ("arq", "redis", "uvloop"),
        ),
        System(
            "saq",
            "saq_app",
            False,
            saq_commands,
            {
                "noop": "`saq settings --workers 2`, concurrency=100, uvloop",
                "sleep": "`saq settings --workers 2`, concurrency=100, uvloop",
            },
            ("saq", "redis", "uvloop"),
        ),
        System(
            "taskiq",
            "taskiq_app",
            False,
            taskiq_commands,
            {
                "noop": "`taskiq worker --workers 2 --max-async-tasks 100`, "
                "taskiq-redis ListQueueBroker, no result backend, uvloop",
                "sleep": "`taskiq worker --workers 2 --max-async-tasks 100`, "
                "taskiq-redis ListQueueBroker, no result backend, uvloop",
            },
            ("taskiq", "taskiq-redis", "redis", "uvloop"),
        ),
        System(
            "huey",
            "huey_app",
            False,
            huey_commands,
            {
                "noop": "2 x `huey_consumer -k greenlet -w 100 -n` (gevent monkey-patched), "
                "RedisHuey(results=False)",
                "sleep": "2 x `huey_consumer -k greenlet -w 100 -n` (gevent monkey-patched), "
                "RedisHuey(results=False)",
            },
            ("huey", "redis", "gevent"),
        ),
        System(
            "rq",
            "rq_app",
            False,
            rq_commands,
            {
                "noop": f"`rq worker-pool -n {RQ_NOOP_WORKERS} -w rq.worker.SimpleWorker` "
                "(one job at a time per process), result_ttl=0",
                "sleep": f"`rq worker-pool -n {RQ_SLEEP_WORKERS} -w rq.worker.SimpleWorker` "
                "(one job at a time per process), result_ttl=0",
            },
            ("rq", "redis"),
        ),
    )
}


# -- processes ---------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pids: list[int]) -> list[int]:
    """The given processes and all their descendants (only processes we started)."""
    tree = _children()
    found: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Workers:
    """The worker processes of one run: started in their own session, stopped by PID."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []
        with log.open("ab") as out:
            for command in commands:
                out.write(("$ " + " ".join(command) + "\n").encode())
                out.flush()
                self.procs.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )

    def exited(self) -> list[int]:
        return [code for p in self.procs if (code := p.poll()) is not None]

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to each started process, then SIGKILL to what is left of the tree."""
        tree = descendants([p.pid for p in self.procs])
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(pid) for pid in tree):
            for p in self.procs:
                p.poll()
            time.sleep(0.05)
        tree += [pid for pid in descendants([p.pid for p in self.procs]) if pid not in tree]
        for pid in tree:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)


@contextlib.contextmanager
def redis_server(port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A private Redis for the benchmark: no RDB snapshots, no AOF; stopped at the end."""
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    proc = subprocess.Popen(
        [
            *(server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"),
            *("no", "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"),
        ],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        yield proc
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- measuring ---------------------------------------------------------------------------------


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def wait_for_quiet(below: float, max_wait: float) -> dict[str, float]:
    """Wait until the 1-minute load average is below `below` (at most `max_wait` seconds)."""
    start = time.monotonic()
    first = loadavg()
    while loadavg() >= below and time.monotonic() - start < max_wait:
        time.sleep(5)
    return {
        "load_before_wait": first,
        "waited_s": round(time.monotonic() - start, 1),
        "load_at_start": loadavg(),
    }


def run_env(system: System, ctx: Ctx) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKENGINE_", "VIRTUAL_ENV"))}
    # Task Engine from this checkout's src/, not whatever tree the venv was installed from.
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT)]) if system.project_venv else str(ROOT)
    env.update(BENCH_REDIS_URL=ctx.redis_url, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    env.update(system.env(ctx))
    return env


def produce(
    system: System, ctx: Ctx, kind: str, count: int, log: Path, timeout: float, rate: float = 0
) -> None:
    python = str(PROJECT_PY if system.project_venv else PEERS_BIN / "python")
    command = [python, "-m", f"bench.peers.{system.module}", "produce"]
    command += ["--kind", kind, "--count", str(count)]
    if rate:
        command += ["--rate", str(rate)]
    with log.open("ab") as out:
        out.write(("$ " + " ".join(command) + "\n").encode())
        out.flush()
        subprocess.run(
            command,
            cwd=ROOT,
            env=run_env(system, ctx),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=True,
        )


def counter(r: redis.Redis) -> int:
    return int(r.get(COUNTER) or 0)


def wait_count(r: redis.Redis, workers: Workers, target: int, timeout: float) -> dict[str, Any]:
    """Poll the counter every 2 ms until it reaches `target`; note the first completion."""
    launched = time.time()
    first_t: float | None = None
    first_n = 0
    while True:
        now = time.time()
        n = counter(r)
        if first_t is None and n > 0:
            first_t, first_n = now, n
        if n >= target:
            return {
                "launched": launched,
                "first_t": first_t,
                "first_n": first_n,
                "done_t": now,
                "count": n,
            }
        if now - launched > timeout:
            raise TimeoutError(f"{n} of {target} tasks done after {timeout:.0f} s")
        if workers.exited():
            raise RuntimeError(f"worker exited with {workers.exited()} after {n} of {target} tasks")
        time.sleep(0.002)


def verify(r: redis.Redis, expected: int) -> int:
    """Half a second after the last completion the counter must still be exactly `expected`."""
    time.sleep(0.5)
    final = counter(r)
    if final != expected:
        raise RuntimeError(f"counter reads {final}, expected exactly {expected}")
    return final


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def latency_run(
    system: System, ctx: Ctx, r: redis.Redis, log: Path, timeout: float, rate: float, count: int
) -> dict[str, Any]:
    """The latency workload: warm up, then `count` single submits paced at `rate` a second."""
    workers = Workers(system.commands("noop", ctx), run_env(system, ctx), log)
    try:
        produce(system, ctx, "mark", WARMUP, log, timeout, rate)
        wait_count(r, workers, WARMUP, timeout)
        verify(r, WARMUP)
        r.delete(COUNTER, LATENCY, PRODUCE_START, PRODUCE_END)
        produce(system, ctx, "mark", count, log, timeout, rate)
        wait_count(r, workers, count, timeout)
        verified = verify(r, count)
    finally:
        workers.stop()
    delays = [float(value) * 1000 for value in r.lrange(LATENCY, 0, -1)]
    if len(delays) != count:
        raise RuntimeError(f"{len(delays)} delays noted for {count} tasks")
    return {
        "verified_count": verified,
        "enqueue_s": round(float(r.get(PRODUCE_END)) - float(r.get(PRODUCE_START)), 3),
        "p50_ms": round(percentile(delays, 50), 3),
        "p99_ms": round(percentile(delays, 99), 3),
        "max_ms": round(max(delays), 3),
    }


def one_run(
    system: System,
    workload: str,
    count: int,
    ctx: Ctx,
    r: redis.Redis,
    log: Path,
    timeout: float,
    rate: float = 500,
) -> dict[str, Any]:
    """One measured run of one workload; returns its figures."""
    kind = "noop" if workload.startswith("noop") else "sleep"
    r.flushall()
    env = run_env(system, ctx)
    row: dict[str, Any] = {"load_start": loadavg()}
    if workload == "latency":
        row.update(latency_run(system, ctx, r, log, timeout, rate, count))
    elif workload.endswith("drain"):
        t0 = time.time()
        produce(system, ctx, kind, count, log, timeout)
        row["enqueue_s"] = round(float(r.get(PRODUCE_END)) - float(r.get(PRODUCE_START)), 3)
        row["producer_process_s"] = round(time.time() - t0, 3)
        workers = Workers(system.commands(kind, ctx), env, log)
        try:
            seen = wait_count(r, workers, count, timeout)
            row["verified_count"] = verify(r, count)
        finally:
            workers.stop()
        span = seen["done_t"] - seen["first_t"]
        row.update(
            startup_s=round(seen["first_t"] - seen["launched"], 3),
            first_count=seen["first_n"],
            drain_s=round(span, 4),
            launch_to_done_s=round(seen["done_t"] - seen["launched"], 3),
            tasks_per_s=round((count - seen["first_n"]) / span, 1),
        )
    else:
        workers = Workers(system.commands(kind, ctx), env, log)
        try:
            produce(system, ctx, kind, WARMUP, log, timeout)
            wait_count(r, workers, WARMUP, timeout)
            verify(r, WARMUP)
            time.sleep(0.5)
            r.delete(COUNTER, PRODUCE_START, PRODUCE_END)
            produce(system, ctx, kind, count, log, timeout)
            seen = wait_count(r, workers, count, timeout)
            row["verified_count"] = verify(r, count)
        finally:
            workers.stop()
        start = float(r.get(PRODUCE_START))
        row.update(
            enqueue_s=round(float(r.get(PRODUCE_END)) - start, 3),
            e2e_s=round(seen["done_t"] - start, 4),
            tasks_per_s=round(count / (seen["done_t"] - start), 1),
        )
    row["enqueue_per_s"] = round(count / row["enqueue_s"], 1) if row["enqueue_s"] else None
    row["load_end"] = loadavg()
    return row


def run_line(workload: str, row: dict[str, Any]) -> str:
    """One measured run, for the progress lines."""
    load = f"load {row['load_start']}-{row['load_end']}"
    if workload == "latency":
        return f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms ({load})"
    if workload == "sleep-drain":
        return f"{row['drain_s']:,.3f} s ({load}, enqueue {row['enqueue_per_s']:,.0f}/s)"
    return f"{row['tasks_per_s']:,.3f} tasks/s ({load}, enqueue {row['enqueue_per_s']:,.0f}/s)"


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- facts -------------------------------------------------------------------------------------


def versions(system: System) -> dict[str, str]:
    python = str(PROJECT_PY if system.project_venv else PEERS_BIN / "python")
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        f"for name in {list(system.packages)!r}:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: out[name] = 'not installed'\n"
        "print(json.dumps(out))"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout))


def machine(r: redis.Redis) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    debian = ""
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    info = r.info("server")
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "platform": platform.platform(),
        "debian": debian,
        "driver_python": platform.python_version(),
        "redis_server": info.get("redis_version"),
        "redis_persistence": "save '' (no RDB), appendonly no",
    }


# -- output ------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| system | no-op drain, tasks/s | no-op end-to-end, tasks/s | "
        "10 ms I/O drain, s (5,000 tasks) | load avg (start-end) |"
    )
    lines = [head, "|---|---:|---:|---:|---|"]
    by_system: dict[str, dict[str, dict[str, Any]]] = {}
    for res in results:
        if res["workload"] not in WORKLOADS[:3]:
            continue
        by_system.setdefault(res["system"], {})[res["workload"]] = res
    for name, workloads in by_system.items():
        cells = []
        loads = []
        for workload in WORKLOADS:
            res = workloads.get(workload)
            if res is None or "summary" not in res:
                cells.append("failed" if res else "-")
                continue
            s = res["summary"]
            if workload == "sleep-drain":
                cell = f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"
            else:
                cell = f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"
            valid = res.get("valid_runs", len(res["runs"]))
            if valid < len(res["runs"]):
                cell += f" [{valid} of {len(res['runs'])} runs verified]"
            cells.append(cell)
            loads += [run["load_start"] for run in res["runs"] if "load_start" in run]
            loads += [run["load_end"] for run in res["runs"]]
        load = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {load} |")
    return "\n".join(lines)


def latency_table(results: list[dict[str, Any]]) -> str:
    """The latency workload: p50 and p99 per system, median of the verified runs (min-max)."""
    lines = [
        "| system | p50, ms | p99, ms | max, ms (worst run) | load avg (start-end) |",
        "|---|---:|---:|---:|---|",
    ]
    for res in results:
        if res["workload"] != "latency":
            continue
        good = [run for run in res["runs"] if "error" not in run]
        if not good:
            lines.append(f"| {res['system']} | failed | failed | - | - |")
            continue
        cells = []
        for key in ("p50_ms", "p99_ms"):
            s = summary([run[key] for run in good])
            cells.append(f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})")
        cells.append(f"{max(run['max_ms'] for run in good):.1f}")
        if len(good) < len(res["runs"]):
            cells[-1] += f" [{len(good)} of {len(res['runs'])} runs verified]"
        loads = [run["load_start"] for run in good] + [run["load_end"] for run in good]
        lines.append(
            f"| {res['system']} | {' | '.join(cells)} | {min(loads):.2f}-{max(loads):.2f} |"
        )
    return "\n".join(lines)


def print_tables(results: list[dict[str, Any]]) -> None:
    """The throughput table and the latency table, each if any of its workloads ran."""
    if any(res["workload"] in WORKLOADS[:3] for res in results):
        print("\n" + table(results))
    if any(res["workload"] == "latency" for res in results):
        print("\n" + latency_table(results))


def chart(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Three bar panels: medians with min-max whiskers (matplotlib, peers venv only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("noop-drain", "no-op drain (tasks/s, higher is better)"),
        ("noop-e2e", "no-op end to end (tasks/s, higher is better)"),
        ("sleep-drain", "5,000 x 10 ms I/O drain (s, lower is better)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, (workload, label) in zip(axes, panels, strict=True):
        rows = [r for r in results if r["workload"] == workload and "summary" in r]
        names = [r["system"] for r in rows]
        med = [r["summary"]["median"] for r in rows]
        low = [r["summary"]["median"] - r["summary"]["min"] for r in rows]
        high = [r["summary"]["max"] - r["summary"]["median"] for r in rows]
        colors = ["#2b6cb0" if n.startswith("te-") else "#a0aec0" for n in names]
        ax.barh(names, med, xerr=[low, high], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(label, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        for y, (value, top) in enumerate(zip(med, high, strict=True)):
            text = f"{value:.2f}" if workload == "sleep-drain" else f"{value:,.0f}"
            ax.text(value + top, y, "  " + text, va="center", fontsize=8)  # past the whisker
        ax.margins(x=0.25)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, from: {', '.join(SYSTEMS)}"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--noop", type=int, default=20_000, help="no-op tasks per run")
    parser.add_argument("--sleep", type=int, default=5_000, help="10 ms tasks per run")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run phase")
    parser.add_argument("--latency-rate", type=float, default=500, help="latency: submits/s")
    parser.add_argument("--latency-seconds", type=float, default=10, help="latency: seconds")
    parser.add_argument("--load-below", type=float, default=1.0)
    parser.add_argument(
        "--load-wait",
        type=float,
        default=300,
        help="longest wait for a quiet machine before each system, seconds",
    )
    parser.add_argument("--redis-port", type=int, help="port of the private redis-server")
    parser.add_argument("--chart", default=str(CHART), help="PNG path ('' for none)")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="measure nothing: combine result files (a later file's system+workload replaces "
        "an earlier one's), print the table, write the chart and a merged JSON",
    )
    return parser.parse_args(argv)


def merge(files: list[str], chart_path: str) -> None:
    """Rebuild table, chart and one JSON from earlier runs (e.g. after re-running one batch)."""
    payloads = [json.loads(Path(f).read_text()) for f in files]
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    versions_seen: dict[str, Any] = {}
    for payload in payloads:
        versions_seen.update(payload["versions"])
        for res in payload["results"]:
            merged[(res["system"], res["workload"])] = res
    order = [n for n in SYSTEMS if any(k[0] == n for k in merged)]
    results = [merged[(n, w)] for n in order for w in WORKLOADS if (n, w) in merged]
    print_tables(results)
    out = RESULTS / f"peers-merged-{time.strftime('%Y%m%dT%H%M%S')}.json"
    payload = {
        "machine": payloads[0]["machine"],
        "versions": versions_seen,
        "sources": [str(Path(f).resolve()) for f in files],
        "configs": [p["config"] for p in payloads],
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(f"written to {out}")
    if chart_path:
        redis_version = payload["machine"]["redis_server"]
        title = (
            f"Task Engine vs Python task queues, 2 cores, Redis {redis_version} "
            f"({time.strftime('%Y-%m-%d')}; median of the verified runs, whiskers min-max)"
        )
        chart(results, Path(chart_path), title)
        print(f"chart written to {chart_path}")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.merge:
        merge(args.merge, args.chart)
        return
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for name in names:
        if name not in SYSTEMS:
            sys.exit(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="peers-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    port = args.redis_port or free_port()
    started = time.time()
    results: list[dict[str, Any]] = []
    print(f"private redis-server on 127.0.0.1:{port}; logs in {logs}", flush=True)
    with redis_server(port, workdir):
        r = redis.Redis(port=port)
        facts = machine(r)
        facts["loadavg_1m_at_start"] = loadavg()
        print("machine:", ", ".join(f"{k}={v}" for k, v in facts.items()), flush=True)
        all_versions = {}
        for name in names:
            system = SYSTEMS[name]
            all_versions[name] = versions(system)
            print(f"\n== {name} {all_versions[name]}", flush=True)
            quiet = wait_for_quiet(args.load_below, args.load_wait)  # one batch per system
            print(
                f"   load average {quiet['load_at_start']} after waiting {quiet['waited_s']} s",
                flush=True,
            )
            for workload in workloads:
                count = args.sleep if workload == "sleep-drain" else args.noop
                if workload == "latency":
                    count = int(args.latency_rate * args.latency_seconds)
                kind = "sleep" if workload == "sleep-drain" else "noop"  # latency: noop's
                res: dict[str, Any] = {
                    "system": name,
                    "workload": workload,
                    "tasks": count,
                    "config": system.config[kind],
                    "unit": {"sleep-drain": "s", "latency": "ms (p99)"}.get(workload, "tasks/s"),
                    "batch_wait": quiet,
                    "runs": [],
                }
                log = logs / f"{name}-{workload}.log"
                for i in range(args.runs):
                    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
                    ctx = Ctx(redis_url=f"redis://127.0.0.1:{port}/0", tmp=tmp)
                    try:
                        row = one_run(
                            system, workload, count, ctx, r, log, args.timeout, args.latency_rate
                        )
                    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
                        row = {"error": f"{type(exc).__name__}: {exc}", "load_end": loadavg()}
                        print(
                            f"  {workload} run {i + 1}: FAILED {row['error']} (log {log})",
                            flush=True,
                        )
                    else:
                        print(f"  {workload} run {i + 1}: {run_line(workload, row)}", flush=True)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                    res["runs"].append(row)
                good = [row for row in res["runs"] if "error" not in row]
                res["valid_runs"] = len(good)
                if good:  # over the verified runs only; the table says if any failed
                    key = "drain_s" if workload == "sleep-drain" else "tasks_per_s"
                    key = "p99_ms" if workload == "latency" else key
                    res["summary"] = summary([row[key] for row in good])
                results.append(res)
        r.flushall()
        r.close()
    facts["loadavg_1m_at_end"] = loadavg()
    print_tables(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"peers-{stamp}.json"
    config = dict(vars(args))
    config["warmup_tasks_e2e"] = WARMUP
    payload = {
        "machine": facts,
        "versions": all_versions,
        "config": config,
        "elapsed_s": round(time.time() - started, 1),
        "results": results,
    }
    out.write_text(json.dumps(payload, indent=2))
    print(
        f"\n({payload['elapsed_s']:.0f} s; load average {facts['loadavg_1m_at_start']} at start,"
        f" {facts['loadavg_1m_at_end']} at end)\nwritten to {out}"
    )
    if args.chart:
        title = (
            f"Task Engine vs Python task queues, 2 cores, Redis {facts['redis_server']} "
            f"({time.strftime('%Y-%m-%d')}; median of {args.runs}, whiskers min-max)"
        )
        chart(results, Path(args.chart), title)
        print(f"chart written to {args.chart}")
    print(f"worker logs kept in {logs}")


if __name__ == "__main__":
    main()
