"""Helpers of the chaos tests: engine processes, the run log, bounded waits, private servers.

Every process here is started by the test and ended by its own PID (a `Popen`, or a server
started by `pg_ctl` from a data directory the test made). `Children.close` and the servers'
`close` run in fixtures' teardown, so nothing outlives a failing test.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskengine.brokers import BrokerBackend
from taskengine.model import TaskRecord, TaskState, new_task
from tests.chaos.app import RUN_LOG, TASK_TYPE

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.app:app"
LONG = os.environ.get("CHAOS_LONG") == "1"  # the long forms (`make chaos`)
IN_CI = os.environ.get("CI") == "true"


def pick(short: T, long: T) -> T:
    """The short form's value in a normal run, the long form's with CHAOS_LONG=1."""
    return long if LONG else short


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- waiting --------------------------------------------------------------------------------


async def until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout: float,
    what: str,
    *,
    every: float = 0.05,
    diagnose: Callable[[], str] | None = None,
) -> float:
    """Poll `predicate` until true; return the seconds it took. On timeout fail saying `what`
    (and what `diagnose` tells)."""
    start = time.monotonic()
    while True:
        answer = predicate()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            extra = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        await asyncio.sleep(every)


# -- engine processes -----------------------------------------------------------------------


def engine_env(
    tmp: Path, settings: Mapping[str, object], run_log: Path | None = None
) -> dict[str, str]:
    """The environment of an engine process: ours without TASKENGINE_*, plus `settings` as
    TASKENGINE_<NAME> and the run log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKENGINE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TASKENGINE_DATA_DIR"] = str(tmp / "data")
    env.pop(RUN_LOG, None)
    if run_log is not None:
        env[RUN_LOG] = str(run_log)
    for name, value in settings.items():
        env[f"TASKENGINE_{name.upper()}"] = str(value)
    return env


def taskengine(broker_url: str, *args: object) -> list[str]:
    """`python -m taskengine --broker URL --app tests.chaos.app:app ARGS...`."""
    base = [sys.executable, "-m", "taskengine", "--broker", broker_url, "--app", APP]
    return [*base, *(str(arg) for arg in args)]


def worker_command(broker_url: str, workers: int, grace: float = 5.0) -> list[str]:
    return taskengine(
        broker_url, "worker", "--workers", workers, "--grace", grace, "--log-level", "info"
    )


class Child:
    """One process the test started; stdout and stderr go to files next to each other."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.out = logs / f"{name}.out"
        self.err = logs / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        self.pid = self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` if the process has not been reaped (so never to a reused PID)."""
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap (a stopped process dies too)."""
        if self.alive:
            self.popen.kill()
        self.popen.wait()

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} (pid {self.pid}) stderr:\n{self.stderr()[-chars:]}"

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr."""
        events = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def started_worker(self) -> bool:
        """The worker printed its start line."""
        return " started: broker " in self.stdout()

    def started_or_exited(self) -> bool:
        return self.started_worker() or not self.alive

    async def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit by itself; fail (after killing it) on timeout."""
        try:
            await until(lambda: not self.alive, timeout, f"{self.name} to exit", every=0.05)
        except AssertionError:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s\n{self.tail()}"
            ) from None
        code = self.popen.returncode
        assert code is not None
        return code

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and expect a clean exit (status 0)."""
        self.signal(signal.SIGTERM)
        code = await self.wait_exit(timeout)
        assert code == 0, f"{self.name} exited with {code}\n{self.tail()}"


class Children:
    """Every process a test starts; `close` kills, by PID, the ones still running."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.all: list[Child] = []
        self._count: Counter[str] = Counter()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> Child:
        self._count[name] += 1
        child = Child(f"{name}-{self._count[name]}", command, env, self.logs)
        self.all.append(child)
        return child

    async def started_workers(self, children: Sequence[Child], timeout: float = 30.0) -> None:
        """Wait until each worker printed its start line."""
        for child in children:
            await until(
                child.started_or_exited, timeout, f"{child.name} to start", diagnose=child.tail
            )
            assert child.alive, f"{child.name} exited at start\n{child.tail()}"

    def tails(self) -> str:
        return "\n".join(child.tail(1500) for child in self.all)

    def close(self) -> None:
        for child in self.all:
            child.kill()  # SIGKILL ends a stopped (SIGSTOP) process too


# -- the run log (tests/chaos/app.py) -------------------------------------------------------


class RunLog:
    """The handlers' "start|finish ID ATTEMPT PID" lines."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[tuple[str, str, int, int]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            event, task_id, attempt, pid = line.split()
            out.append((event, task_id, int(attempt), int(pid)))
        return out

    def runs(self, event: str, task_id: str | None = None) -> list[tuple[str, int, int]]:
        """(task id, attempt, pid) of each `event` line, optionally of one task."""
        return [
            (t, attempt, pid)
            for e, t, attempt, pid in self.lines()
            if e == event and (task_id is None or t == task_id)
        ]

    def running(self, pid: int) -> int:
        """How many runs process `pid` started and has not finished."""
        lines = self.lines()
        started = sum(1 for e, _, _, p in lines if e == "start" and p == pid)
        return started - sum(1 for e, _, _, p in lines if e == "finish" and p == pid)


# -- tasks and records ----------------------------------------------------------------------


async def submit(broker: BrokerBackend, count: int, seconds: float, batch: int = 500) -> list[str]:
    """Enqueue `count` chaos.run tasks (acknowledged once this returns); return their ids."""
    ids: list[str] = []
    for start in range(0, count, batch):
        now = time.time()
        tasks = [
            new_task(TASK_TYPE, {"seconds": seconds}, now=now, max_attempts=100)
            for _ in range(min(batch, count - start))
        ]
        results = await broker.enqueue(tasks, now)
        assert all(r.created for r in results)
        ids += [r.id for r in results]
    return ids


async def records(broker: BrokerBackend, ids: Sequence[str]) -> dict[str, TaskRecord]:
    """The records of `ids`; fail naming the ids that are not stored."""
    found: dict[str, TaskRecord] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for task_id, record in zip(chunk, await broker.get(chunk), strict=True):
            if record is not None:
                found[task_id] = record
    lost = [task_id for task_id in ids if task_id not in found]
    if lost:
        report = await storage_report(broker)
        raise AssertionError(f"{len(lost)} tasks lost (first: {lost[:5]})\n{report}")
    return found


async def storage_report(broker: BrokerBackend) -> str:
    """What the broker still holds, and for Redis what its server says (a FLUSHALL, or a
    restart of the shared server, which keeps nothing across one, wipes every namespace):
    tells a record the engine dropped from a store wiped under the test."""
    lines = []
    try:
        counts = await state_counts(broker)
        held = ", ".join(f"{state}={n}" for state, n in sorted(counts.items()) if n)
        lines.append(f"the broker counts: {held or 'no task at all'}")
    except Exception as exc:  # a report must not hide the failure it explains
        lines.append(f"the broker's counts failed: {exc!r}")
    url = str(getattr(broker, "url", ""))
    if url.startswith("redis"):
        lines.append(await redis_server_report(url))
    return "\n".join(lines)


async def redis_server_report(url: str) -> str:
    """The Redis server's uptime and the FLUSHALL/FLUSHDB calls it served since it started."""
    from redis.asyncio import Redis

    client = Redis.from_url(url.split("?", 1)[0], socket_timeout=5)
    try:
        server = await client.info("server")
        stats = await client.info("commandstats")
    except Exception as exc:
        return f"redis INFO failed: {exc!r}"
    finally:
        await client.aclose()
    flushes = {
        name: value.get("calls", 0)
        for name, value in stats.items()
        if name in ("cmdstat_flushall", "cmdstat_flushdb")
    }
    return f"redis server: up {server.get('uptime_in_seconds')} s, flushes since: {flushes or 0}"


async def state_counts(broker: BrokerBackend) -> Counter[TaskState]:
    """How many tasks are in each state (one `counts` call)."""
    counts: Counter[TaskState] = Counter()
    for row in await broker.counts():
        counts[row.state] += row.count
    return counts


async def wait_state(
    broker: BrokerBackend,
    task_id: str,
    state: TaskState,
    timeout: float,
    what: str,
    diagnose: Callable[[], str] | None = None,
) -> TaskRecord:
    """Poll one task until it is in `state`; return its record."""
    last: list[TaskRecord] = []

    async def reached() -> bool:
        last[:] = (await records(broker, [task_id])).values()
        return last[0].state is state

    await until(reached, timeout, what, every=0.1, diagnose=diagnose)
    return last[0]


def pid_of(worker_id: str | None) -> int | None:
    """The PID in a worker id (`host:pid:random/wN`)."""
    if worker_id is None:
        return None
    parts = worker_id.split(":")
    return int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None


# -- private servers (the broker-restart test) ----------------------------------------------


def _missing(what: str) -> None:
    """Skip outside CI, fail in CI: a tool the test needs is not installed."""
    if IN_CI:
        pytest.fail(f"{what} is missing; CI must provide it")
    pytest.skip(f"{what} is missing")


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, run as the `postgres` user when
    the tests run as root (the server refuses to run as root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            _missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
        self.bin = found[-1].parent
        self.as_root = os.geteuid() == 0
        if self.as_root and shutil.which("runuser") is None:
            _missing("runuser (to run PostgreSQL as its own user)")
        # not under pytest's tmp_path: that is private to root, and the server runs as postgres
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-N")

    def url(self, schema: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres?schema={schema}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log", "-w", "start")

    def crash(self) -> None:
        """Stop at once, as a crash would: no checkpoint, committed work is in the WAL."""
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError):
                self.crash()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _run(self, tool: str, *args: object) -> None:
        command = [str(self.bin / tool), *(str(arg) for arg in args)]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise AssertionError(
                f"{tool} failed ({done.returncode}): {done.stderr.decode()[-2000:]}\n{self.log()}"
            )
