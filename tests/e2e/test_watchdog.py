"""Handlers that never yield, against real `taskengine worker` processes.

An async handler spinning on the loop is found by the watchdog, which names the task and ends
the process; `--processes` starts a new one, the lease returns the task with the attempt spent,
and the task ends dead after its attempts. A thread that spins does not keep a stopped worker
alive. A CPU hog on the process executor is stopped by the CPU-time cap, without retry.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import Cli

pytestmark = pytest.mark.slow
APP = "tests.e2e.stuck_app:app"
DEADLINE = 90.0
FAST = {  # short leases and a short margin, so each attempt takes seconds
    "TASKENGINE_LEASE_FOR": "3",
    "TASKENGINE_HEARTBEAT_EVERY": "1",
    "TASKENGINE_REAPER_EVERY": "0.5",
    "TASKENGINE_WATCHDOG_MARGIN": "1",
    "TASKENGINE_IDLE_WAIT": "0.2",
}


def start(
    cli: Cli, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`python -m taskengine --broker <url> [--app APP] <args>`, output (both streams) to `out`."""
    app = ["--app", cli.app_path] if cli.app_path else []
    with out.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "taskengine", "--broker", cli.url, *app, *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **FAST, **(env or {})},
        )


def wait_for(cli: Cli, task_id: str, states: set[str], out: Path) -> dict[str, Any]:
    """Poll `status --json` until the task is in one of `states` (bounded)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        record: dict[str, Any] = cli.json("status", task_id)
        if record["state"] in states:
            return record
        assert time.monotonic() < deadline, (record, out.read_text()[-4000:])
        time.sleep(0.1)


def pids_in(text: str) -> set[int]:
    """Every worker process pid the supervisor announced."""
    found = {int(p) for line in re.findall(r"pids ([\d, ]+)", text) for p in line.split(", ")}
    return found | {int(p) for p in re.findall(r"restarted as pid (\d+)", text)}


def wait_for_restarts(out: Path, count: int) -> None:
    """Wait until the supervisor has restarted `count` children (ended by the watchdog or, in
    a run seen once under load, by a crash while it ended the process)."""
    deadline = time.monotonic() + DEADLINE
    while len(re.findall(r"restarted as pid \d+", text := out.read_text())) < count:
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.05)


def wait_all_started(out: Path) -> None:
    """Wait until every worker process the supervisor started (restarts too) says so."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text = out.read_text()
        if len(re.findall(r"^worker \S+ started: ", text, re.M)) >= len(pids_in(text)):
            return
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.05)


def kill_leftovers(proc: subprocess.Popen[str], pids: set[int]) -> None:
    """SIGKILL what a failed test left running, by the PIDs it started."""
    for pid in {proc.pid, *pids}:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def test_a_handler_that_blocks_the_loop_is_ended_and_dies_after_its_attempts(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path, app_path=APP)
    out = tmp_path / "worker.out"
    proc = start(cli, out, "worker", "--processes", "2", "--workers", "1", "--grace", "1")
    try:
        task_id = cli.submit("stuck.loop")
        record = wait_for(cli, task_id, {"dead"}, out)
        assert "attempts exhausted (2 of 2): lease expired" in record["result"]["error"], record
        assert record["attempt"] == 2  # two runs: the second lease's expiry dead-letters it
        # The second run's lease may run out (and the task die) before its process's watchdog
        # ends it: stop only once both blocked processes were ended and replaced.
        wait_for_restarts(out, 2)
        wait_all_started(out)  # a child killed before its signal handlers exits -15
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        took = time.monotonic() - began
    finally:
        text = out.read_text()
        if proc.poll() is None:
            kill_leftovers(proc, pids_in(text))
    assert proc.returncode == 0, text[-4000:]
    assert took < 20, took
    blocked = [line for line in text.splitlines() if "event loop blocked" in line]
    assert len(blocked) == 2, text[-4000:]  # once per attempt
    for line in blocked:
        assert task_id in line and "stuck.loop" in line, line
        assert "process executor" in line, line  # says where CPU-bound code belongs
    assert text.count("exited with 75 (watchdog); restarted as pid") == 2, text[-4000:]


def test_a_spinning_thread_does_not_keep_a_stopped_worker_alive(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP)
    out = tmp_path / "worker.out"
    proc = start(cli, out, "worker", "--workers", "1", "--grace", "1")
    try:
        task_id = cli.submit("stuck.thread")
        record = wait_for(cli, task_id, {"dead"}, out)
        assert record["result"]["status"] == "TIMEOUT", record
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker still runs 20 s after SIGTERM: " + out.read_text()[-3000:])
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            kill_leftovers(proc, set())
    text = out.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert took < 15, took
    abandoned = [line for line in text.splitlines() if "abandoned" in line]
    assert abandoned and task_id in abandoned[0], text[-3000:]


def test_a_cpu_hog_on_the_process_executor_is_stopped_by_its_cap_once(tmp_path: Path) -> None:
    cli = Cli(tmp_path)  # the built-in task types
    out = tmp_path / "worker.out"
    cap = {"TASKENGINE_PROCESS_CPU_SECONDS": "2", "TASKENGINE_PROCESS_POOL": "1"}
    proc = start(cli, out, "worker", "--workers", "1", "--grace", "1", env=cap)
    try:
        # 80 bytes that ask for 64 MiB x 1000 rounds: minutes of one core per attempt
        task_id = cli.submit("cpu.sha256", {"size": 64 * 1024 * 1024, "rounds": 1000})
        record = wait_for(cli, task_id, {"dead", "succeeded"}, out)
        later = cli.submit("cpu.fibonacci", {"n": 10})
        assert wait_for(cli, later, {"dead", "succeeded"}, out)["state"] == "succeeded"
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            kill_leftovers(proc, set())
    assert record["state"] == "dead", record
    assert record["attempt"] == 1  # not retried: the same input uses as much again
    assert record["result"]["status"] == "TIMEOUT"
    assert "CPU time" in record["result"]["error"], record


def test_a_process_ended_by_the_watchdog_leaves_no_pool_child_running(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP)
    out = tmp_path / "worker.out"
    pid_file = tmp_path / "child.pid"
    proc = start(cli, out, "worker", "--workers", "2", env={"TASKENGINE_PROCESS_POOL": "1"})
    child = 0
    try:
        cli.submit("stuck.process", {"pid_file": str(pid_file)})
        deadline = time.monotonic() + DEADLINE
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.05)
        child = int(pid_file.read_text())
        cli.submit("stuck.loop")
        assert proc.wait(DEADLINE) == 75, out.read_text()[-3000:]
        deadline = time.monotonic() + 10
        while alive(child):
            assert time.monotonic() < deadline, "the pool's child outlived its worker"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            kill_leftovers(proc, set())
        if child and alive(child):
            os.kill(child, signal.SIGKILL)


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_serve_with_a_blocked_loop_is_ended_and_says_which_task(tmp_path: Path) -> None:
    cli = Cli(tmp_path, app_path=APP)
    out = tmp_path / "serve.out"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = start(cli, out, "serve", "--port", str(port), "--workers", "1")
    try:
        deadline = time.monotonic() + DEADLINE
        while "Task Engine at http://" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.05)
        task_id = cli.submit("stuck.loop")
        assert proc.wait(DEADLINE) == 75, out.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            kill_leftovers(proc, set())
    blocked = [line for line in out.read_text().splitlines() if "event loop blocked" in line]
    assert len(blocked) == 1 and task_id in blocked[0], out.read_text()[-3000:]
