"""SIGTERM on a real worker process under load: nothing lost, nothing finished run again.

A child process (`worker_child.py`, or the `taskengine worker` command loading its app) runs
five workers on a SQLite file, each task sleeping 0.2-1.5 s and logging its start and finish
to a file (fsynced). The test sends SIGTERM while some tasks are done and some running, then
reads the store: every task is succeeded or queued, finished ones are succeeded, unfinished
ones were handed back with no attempt burned. A second worker then drains the rest, and every
task has exactly one finish line across both runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from taskengine.brokers import open_broker
from taskengine.model import TaskRecord, TaskState, new_task

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("worker_child.py")
TASKS = 100


def sleep_of(n: int) -> float:
    return 0.2 + (n * 37 % 131) / 100  # 0.2-1.5 s


class Log:
    """The child's start/finish lines."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[tuple[str, str, int]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            event, task_id, attempt, _pid = line.split()
            out.append((event, task_id, int(attempt)))
        return out

    def ids(self, event: str, lines: list[tuple[str, str, int]] | None = None) -> list[str]:
        return [i for e, i, _ in (self.lines() if lines is None else lines) if e == event]


async def submit(db: Path) -> list[str]:
    broker = open_broker(f"sqlite:///{db}")
    await broker.start()
    try:
        now = time.time()
        tasks = [
            new_task("slow", {"sleep": sleep_of(n)}, now=now, max_attempts=5) for n in range(TASKS)
        ]
        await broker.enqueue(tasks, now)
        return [t.id for t in tasks]
    finally:
        await broker.close()


async def records(db: Path, ids: list[str]) -> list[TaskRecord]:
    broker = open_broker(f"sqlite:///{db}")
    await broker.start()
    try:
        found = await broker.get(ids)
    finally:
        await broker.close()
    assert all(r is not None for r in found), "a task was lost"
    return [r for r in found if r is not None]


def child_env(db: Path, log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TASKENGINE_BROKER_URL"] = f"sqlite:///{db}"
    env["WORKER_CHILD_LOG"] = str(log)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


async def start(command: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float) -> tuple[int, str]:
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        _, err = await proc.communicate()
        raise AssertionError(
            f"the worker did not exit within {timeout} s: {err.decode()[-3000:]}"
        ) from None
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")[-3000:]


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def script(workers: int, grace: float, *extra: str) -> list[str]:
    return [sys.executable, str(CHILD), "--workers", str(workers), "--grace", str(grace), *extra]


def cli(workers: int, grace: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskengine",
        "--app",
        "tests.e2e.worker_child:app",
        "worker",
        "--workers",
        str(workers),
        "--grace",
        str(grace),
    ]


async def drain_and_check(db: Path, log: Log, env: dict[str, str], ids: list[str]) -> None:
    """Run a second worker until idle; then every task succeeded and finished exactly once."""
    proc = await start(script(50, 5, "--until-idle"), env)
    code, err = await finish(proc, 30)
    assert code == 0, err
    final = await records(db, ids)
    assert {r.state for r in final} == {TaskState.SUCCEEDED}
    finishes = Counter(log.ids("finish"))
    assert set(finishes) == set(ids)
    assert set(finishes.values()) == {1}, "a finished task ran again"


@pytest.mark.parametrize("how", ["script", "cli"])
async def test_sigterm_lets_running_tasks_finish_and_hands_back_the_rest(
    tmp_path: Path, how: str
) -> None:
    db, log = tmp_path / "x.db", Log(tmp_path / "runs.log")
    ids = await submit(db)
    env = child_env(db, log.path)
    command = script(5, 10) if how == "script" else cli(5, 10)
    proc = await start(command, env)
    try:
        await until(
            lambda: len(log.ids("finish")) >= 5 and len(log.ids("start")) > len(log.ids("finish")),
            20,
            "some finished and some running",
        )
    except BaseException:
        proc.kill()
        await proc.communicate()
        raise
    proc.send_signal(signal.SIGTERM)
    at_signal = log.lines()
    code, err = await finish(proc, 20)
    assert code == 0, err

    lines = log.lines()
    started, finished = set(log.ids("start", lines)), set(log.ids("finish", lines))
    running_at_signal = set(log.ids("start", at_signal)) - set(log.ids("finish", at_signal))
    assert running_at_signal, "nothing was running when the signal came"
    assert running_at_signal <= finished, "a running task did not get its grace period"
    assert started == finished  # grace 10 s > every task: all that started, finished
    final = {r.id: r for r in await records(db, ids)}
    assert {r.state for r in final.values()} <= {TaskState.SUCCEEDED, TaskState.QUEUED}
    for task_id, record in final.items():
        if task_id in finished:
            assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 1), task_id
        else:
            assert (record.state, record.attempt) == (TaskState.QUEUED, 0), task_id
            assert record.history == []
    assert len(finished) < TASKS  # the test stopped a busy worker, not an idle one
    await drain_and_check(db, log, env, ids)


async def test_a_second_sigterm_skips_the_grace_period(tmp_path: Path) -> None:
    db, log = tmp_path / "x.db", Log(tmp_path / "runs.log")
    ids = await submit(db)
    env = child_env(db, log.path)
    proc = await start(script(5, 60), env)
    try:
        await until(
            lambda: len(log.ids("finish")) >= 3 and len(log.ids("start")) > len(log.ids("finish")),
            20,
            "some finished and some running",
        )
    except BaseException:
        proc.kill()
        await proc.communicate()
        raise
    proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    start_time = time.monotonic()
    code, err = await finish(proc, 15)
    assert code == 0, err
    assert time.monotonic() - start_time < 10  # far less than the 60 s grace

    lines = log.lines()
    started, finished = set(log.ids("start", lines)), set(log.ids("finish", lines))
    interrupted = started - finished
    assert interrupted, "the second signal interrupted nothing"
    final = {r.id: r for r in await records(db, ids)}
    assert {r.state for r in final.values()} <= {TaskState.SUCCEEDED, TaskState.QUEUED}
    for task_id, record in final.items():
        if task_id in finished:
            assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 1), task_id
        else:  # interrupted or never started: handed back, no attempt burned
            assert (record.state, record.attempt) == (TaskState.QUEUED, 0), task_id
    await drain_and_check(db, log, env, ids)
