"""What an idle `taskengine worker` holds: no child processes until a task needs them; and the
`--processes` supervisor that cannot fork still starts its engine processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.cli.support import Cli

pytestmark = pytest.mark.slow
DEADLINE = 60.0


@contextmanager
def spawned(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    """Run `command`; SIGTERM it at the end (SIGKILL if it will not stop)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def wait_for_lines(proc: subprocess.Popen[str], text: str, count: int) -> None:
    """Read the output until `count` lines have held `text`."""
    assert proc.stdout is not None
    seen = 0
    while seen < count:
        line = proc.stdout.readline()
        assert line, f"output ended before {count} lines with {text!r}"
        seen += text in line


def wait_for_state(cli: Cli, task_id: str, state: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while (record := cli.json("status", task_id))["state"] != state:
        assert record["state"] in ("queued", "running"), record
        assert time.monotonic() < deadline, record
        time.sleep(0.05)


def test_the_quick_start_worker_has_no_child_process_until_a_cpu_task_runs(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path)  # no --app: the built-ins, three of them executor="process"
    command = [sys.executable, "-m", "taskengine", "--broker", cli.url, "worker"]
    with spawned([*command, "--process-pool", "1"]) as proc:
        wait_for_lines(proc, " started: ", 1)
        quick = cli.submit("time.sleep", {"seconds": 0})
        wait_for_state(cli, quick, "succeeded")
        assert psutil.Process(proc.pid).children(recursive=True) == []
        primes = cli.submit("cpu.primes", {"limit": 1000})
        wait_for_state(cli, primes, "succeeded")
        assert cli.json("status", primes)["result"]["data"]["count"] == 168
        assert psutil.Process(proc.pid).children(recursive=True) != []  # the pool, started


def test_a_supervisor_that_cannot_fork_starts_new_interpreters(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    # a thread running in the supervisor: forking it would copy a process mid-flight
    script = (
        "import sys, threading, time; "
        "threading.Thread(target=time.sleep, args=(600,), daemon=True).start(); "
        "from taskengine.cli import main; sys.argv[0] = 'taskengine'; main()"
    )
    command = [sys.executable, "-c", script, "--broker", cli.url, "worker", "--processes", "2"]
    with spawned(command) as proc:
        wait_for_lines(proc, " started: ", 2)
        children = psutil.Process(proc.pid).children()
        assert len(children) == 2
        for child in children:
            assert child.cmdline()[1:3] == ["-m", "taskengine"]  # not a copy of the supervisor
        task_id = cli.submit("time.sleep", {"seconds": 0})
        wait_for_state(cli, task_id, "succeeded")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, out
