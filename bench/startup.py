"""Start-up: from spawning `taskengine worker` (and `--processes 2`) to the first task completed,
then what the idle engine holds: resident memory per engine process and child processes.

Bytecode is compiled once, as an installed package's is (this box sets PYTHONDONTWRITEBYTECODE and
runs from a source tree: every start would compile the engine again), so each case runs once
untimed first. One no-op task is queued before the command is spawned; the clock runs from the
spawn until the broker reports the task succeeded (polled every 5 ms). Then, once every engine
process has printed its start line and a second has passed with nothing to do, the resident set of
each engine process (the supervisor of `--processes` counted apart) and the number of processes
below the command are read. The app is `bench.scale_app:app` (one no-op type, no built-ins); the
quick start's app (no `--app`: the built-ins, three of which run in child processes) is measured
too, for what it holds idle, and then for how long its first and second `cpu.primes` tasks take
(the first also starts the process pool).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import psutil

from bench import row
from taskengine.brokers import open_broker
from taskengine.model import TaskState, new_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = "bench.scale_app:app"
NOOP = "bench.noop"
QUICK = ("time.sleep", {"seconds": 0})
BROKERS = {
    "sqlite": "sqlite:///{tmp}/startup.db",
    "redis": "redis://127.0.0.1:6379/0?namespace=startup{uid}",
}
# bytecode kept apart from the source tree; the first (untimed) run of each case writes it
PYCACHE = os.path.join(tempfile.gettempdir(), "taskengine-bench-pycache")
# the engine's source: this tree's, or another's (`BENCH_ENGINE_SRC`, to measure A/B)
SRC = os.environ.get("BENCH_ENGINE_SRC", os.path.join(ROOT, "src"))
# redis-py 8 imports the OpenTelemetry metrics SDK when it is installed (it is here, for the
# tracing tests): `taskengine worker` as it runs where the SDK is not installed
WITHOUT_OTEL_SDK = (
    "import sys; sys.modules['opentelemetry.sdk'] = None; "
    "from taskengine.cli import main; sys.argv[0] = 'taskengine'; main()"
)
IDLE_SETTLE = 1.0  # seconds after the last start line before the idle engine is measured
DEADLINE = 60.0  # a run that has not completed its task by then is a failure, not a figure


class Spawned:
    """A `taskengine worker` command and the start lines its engine processes print."""

    def __init__(self, url: str, processes: int, app: str | None, *, otel_sdk: bool) -> None:
        env = {**os.environ, "PYTHONPATH": f"{SRC}:{ROOT}", "PYTHONPYCACHEPREFIX": PYCACHE}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled once, not every start
        entry = ["-m", "taskengine"] if otel_sdk else ["-c", WITHOUT_OTEL_SDK]
        command = [sys.executable, *entry, "--broker", url]
        command += ["--app", app] if app else []
        command += ["worker", "--log-level", "warning"]
        command += ["--processes", str(processes)] if processes > 1 else []
        self.started_lines = 0
        self.output: list[str] = []
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("worker ") and " started: " in line:
                self.started_lines += 1

    def engines(self, processes: int) -> tuple[list[psutil.Process], list[psutil.Process]]:
        """(the engine processes, every process below the command)."""
        root = psutil.Process(self.proc.pid)
        below = root.children(recursive=True)
        if processes == 1:
            return [root], below
        return root.children(recursive=False), below

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL past 60 s)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _queue_one(url: str, app: str | None) -> str:
    broker = open_broker(url)
    await broker.start()
    try:
        # the quick start's app has no bench.noop: its no-op is a sleep of no time
        task = new_task(NOOP, None, now=time.time()) if app else new_task(*QUICK, now=time.time())
        await broker.enqueue([task], time.time())
        return task.id
    finally:
        await broker.close()


async def _until_succeeded(url: str, task_id: str, spawned: Spawned) -> float:
    """Seconds from the spawn until `task_id` is succeeded (the broker polled every 5 ms)."""
    broker = open_broker(url)
    await broker.start()
    try:
        while True:
            (record,) = await broker.get([task_id])
            if record is not None and record.state is TaskState.SUCCEEDED:
                return time.perf_counter() - spawned.began
            if time.perf_counter() - spawned.began > DEADLINE or spawned.proc.poll() is not None:
                raise RuntimeError(f"{url}: no task completed; output:\n{''.join(spawned.output)}")
            await asyncio.sleep(0.005)
    finally:
        await broker.close()


async def _one_process_task(url: str) -> float:
    """Seconds from queueing one `cpu.primes` task (a process-executor built-in) until it
    succeeded: on an idle engine, the first such task also waits for the pool to start."""
    broker = open_broker(url)
    await broker.start()
    try:
        task = new_task("cpu.primes", {"limit": 10}, now=time.time())
        began = time.perf_counter()
        await broker.enqueue([task], time.time())
        while True:
            (record,) = await broker.get([task.id])
            if record is not None and record.state is TaskState.SUCCEEDED:
                return time.perf_counter() - began
            if time.perf_counter() - began > DEADLINE:
                raise RuntimeError(f"{url}: the cpu.primes task did not complete")
            await asyncio.sleep(0.005)
    finally:
        await broker.close()


async def _drop(url: str) -> None:
    broker = open_broker(url)
    await broker.start()
    drop = getattr(broker, "drop_namespace", None)
    if drop is not None:
        await drop()
    await broker.close()


def _idle(spawned: Spawned, processes: int) -> tuple[float, float, int]:
    """(largest RSS of an engine process in MB, PSS of every process of the command summed,
    in MB, processes below the command) once idle. PSS counts a page shared by n processes
    (forked children share the supervisor's imports) as 1/n in each."""
    began = time.perf_counter()
    while spawned.started_lines < processes:
        if time.perf_counter() - began > DEADLINE:
            raise RuntimeError(f"not every engine started:\n{''.join(spawned.output)}")
        time.sleep(0.02)
    time.sleep(IDLE_SETTLE)
    engines, below = spawned.engines(processes)
    rss = max(proc.memory_info().rss for proc in engines) / 2**20
    everyone = [psutil.Process(spawned.proc.pid), *below]
    pss = sum(proc.memory_full_info().pss for proc in everyone) / 2**20
    return rss, pss, len(below)


def one_run(
    url: str, processes: int, app: str | None, *, otel_sdk: bool = True
) -> tuple[float, ...]:
    """(seconds to the first task completed, idle RSS per engine process in MB, PSS of the
    whole command in MB, processes below the command) for one spawn of `taskengine worker`;
    with the quick start's app, then the seconds of its first and second `cpu.primes` tasks."""
    task_id = asyncio.run(_queue_one(url, app))  # also creates the storage
    spawned = Spawned(url, processes, app, otel_sdk=otel_sdk)
    try:
        seconds = asyncio.run(_until_succeeded(url, task_id, spawned))
        rss, pss, children = _idle(spawned, processes)
        if app is not None:
            return seconds, rss, pss, children
        first, second = (asyncio.run(_one_process_task(url)) for _ in range(2))
        return seconds, rss, pss, children, first, second
    finally:
        spawned.stop()
        asyncio.run(_drop(url))


def run(runs: int = 3, progress: Any = print) -> list[dict[str, Any]]:
    """Median of `runs` for each broker, process count and app."""
    rows = []
    cases = [(1, APP, True), (2, APP, True), (1, None, True)]
    for name, template in BROKERS.items():
        for processes, app, otel_sdk in cases + ([(1, APP, False)] if name == "redis" else []):
            results = []
            for attempt in range(runs + 1):
                url = template.format(uid=uuid.uuid4().hex[:8], tmp=tempfile.mkdtemp())
                result = one_run(url, processes, app, otel_sdk=otel_sdk)
                if not attempt:
                    continue  # the warm-up: it compiled what this case imports
                results.append(result)
                seconds, rss, pss, children = result[:4]
                progress(
                    f"startup {name} x{processes} {app or 'quick start'}"
                    f"{'' if otel_sdk else ' (no OpenTelemetry SDK)'}: first task in "
                    f"{seconds:.2f} s, idle {rss:.1f} MB RSS per engine process, "
                    f"{pss:.1f} MB PSS in all, {children} child processes "
                    f"(load {os.getloadavg()[0]:.2f})"
                )
            columns = [list(c) for c in zip(*results, strict=True)]
            seconds_col, rss_col, pss_col, children_col = columns[:4]
            label = f"{name}, worker" + (" --processes 2" if processes > 1 else "")
            label += "" if app else " (quick start: built-ins, no --app)"
            label += "" if otel_sdk else " (OpenTelemetry SDK not installed)"
            rows += [
                row(f"{label}: spawn to first task completed (s)", seconds_col),
                row(f"{label}: idle RSS per engine process (MB)", rss_col),
                row(f"{label}: idle PSS of every process, summed (MB)", pss_col),
                row(f"{label}: child processes", [float(c) for c in children_col]),
            ]
            if len(columns) > 4:
                rows += [
                    row(f"{label}: first process task, queued to done (s)", columns[4]),
                    row(f"{label}: second process task, queued to done (s)", columns[5]),
                ]
    return rows


if __name__ == "__main__":
    for figure in run(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        print(figure)
