"""`taskengine serve` as a real process: a second SIGTERM or Ctrl-C during shutdown.

The server runs `tests.e2e.worker_child:app` (task type `slow` sleeps and logs its start) on a
SQLite file with a 60 s grace. One long task with `max_attempts=1` is running when the first
signal comes; once the API has stopped listening (uvicorn is done, the pool is in its grace
period) a second signal comes. The process must skip the grace, hand the task back (queued, no
attempt spent: with one attempt allowed it would otherwise go dead without running) and exit 0,
having said what it waited for.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from taskengine.brokers import open_broker
from taskengine.model import TaskState, new_task
from tests.e2e.test_sigterm import ROOT, Log, child_env, records, until

pytestmark = pytest.mark.slow

GRACE = 60.0  # far longer than the test waits: an exit means the grace was skipped


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def submit_long(db: Path, seconds: float = 600.0) -> str:
    broker = open_broker(f"sqlite:///{db}")
    await broker.start()
    try:
        now = time.time()
        task = new_task("slow", {"sleep": seconds}, now=now, max_attempts=1)
        await broker.enqueue([task], now)
        return task.id
    finally:
        await broker.close()


def serve_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "taskengine",
        "--app",
        "tests.e2e.worker_child:app",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--grace",
        str(GRACE),
    ]


async def healthy(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=2)).is_success
        except httpx.TransportError:
            return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_a_second_signal_during_serve_shutdown_hands_back_running_tasks(
    tmp_path: Path, signum: signal.Signals
) -> None:
    db, log = tmp_path / "x.db", Log(tmp_path / "runs.log")
    task_id = await submit_long(db)
    port = free_port()
    stderr = tmp_path / "serve.stderr"
    with stderr.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            *serve_command(port),
            cwd=ROOT,
            env=child_env(db, log.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err_file,
        )
    try:
        deadline = time.monotonic() + 30
        while not await healthy(port):
            assert proc.returncode is None, stderr.read_text()
            assert time.monotonic() < deadline, "serve not up within 30 s"
            await asyncio.sleep(0.05)
        await until(lambda: task_id in log.ids("start"), 30, "the long task to start")
        proc.send_signal(signum)
        # uvicorn says this when it is done; the pool is then in its grace, the task running
        await until(lambda: "Finished server process" in stderr.read_text(), 30, "the API to stop")
        assert proc.returncode is None
        proc.send_signal(signum)
        code = await asyncio.wait_for(proc.wait(), 30)  # far less than the 60 s grace
    except BaseException:
        if proc.returncode is None:
            proc.kill()  # our own child, by its PID
            await proc.wait()
        raise
    err = stderr.read_text()
    assert code == 0, err
    assert "waiting for 1 running task" in err, err
    assert "interrupting 1 running task" in err, err
    assert task_id not in log.ids("finish")
    (record,) = await records(db, [task_id])
    assert (record.state, record.attempt) == (TaskState.QUEUED, 0), record
    assert record.history == []


async def test_one_signal_lets_the_running_task_finish_and_says_so(tmp_path: Path) -> None:
    db, log = tmp_path / "x.db", Log(tmp_path / "runs.log")
    task_id = await submit_long(db, seconds=3.0)
    port = free_port()
    stderr = tmp_path / "serve.stderr"
    with stderr.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            *serve_command(port),
            cwd=ROOT,
            env=child_env(db, log.path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err_file,
        )
    try:
        await until(lambda: task_id in log.ids("start"), 30, "the task to start")
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    except BaseException:
        if proc.returncode is None:
            proc.kill()  # our own child, by its PID
            await proc.wait()
        raise
    err = stderr.read_text()
    assert code == 0, err
    assert "SIGTERM: stopping gracefully: 1 running task, up to 60 s to finish" in err, err
    assert task_id in log.ids("finish")  # the grace let it finish
    (record,) = await records(db, [task_id])
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 1), record
