"""`taskengine worker` as a real process: it runs submitted tasks and stops on SIGTERM, exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from taskengine.cli.worker_cmd import wait_all
from taskengine.logging import redact_url as redact
from tests.cli.support import Cli

pytestmark = pytest.mark.slow
GRACE = 5.0
DEADLINE = 30.0


@contextmanager
def worker_process(cli: Cli, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`python -m taskengine --broker <url> worker <args>`; killed if the test leaves it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskengine", "--broker", cli.url, "worker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for_state(cli: Cli, task_id: str, states: set[str]) -> dict[str, Any]:
    """Poll `status --json` until the task is in one of `states` (bounded)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        record: dict[str, Any] = cli.json("status", task_id)
        if record["state"] in states:
            return record
        assert time.monotonic() < deadline, f"{task_id} still {record['state']}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str, float]:
    """SIGTERM, then wait; return the exit code, output and how long the exit took."""
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err, time.monotonic() - began


def test_worker_runs_tasks_and_stops_on_sigterm(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    with worker_process(cli, "--workers", "2", "--grace", str(GRACE)) as proc:
        ids = [cli.submit("time.sleep", {"seconds": 0.05}) for _ in range(3)]
        ids.append(cli.submit("cpu.fibonacci", {"n": 50}))
        for task_id in ids:
            record = wait_for_state(cli, task_id, {"succeeded", "dead", "cancelled"})
            assert record["state"] == "succeeded", record
            assert record["result"]["status"] == "SUCCESS"
        assert cli.json("status", ids[-1])["result"]["data"]["last_digits"] == "12586269025"

        code, out, err, took = stop(proc, GRACE + 10)
    assert code == 0, err
    assert took < GRACE, took
    assert "started: broker " + cli.url in out
    assert "2 workers" in out
    assert "time.sleep" in out
    assert "stopping gracefully (Ctrl-C again to skip the wait)" in out
    assert "Traceback" not in err
    assert cli.json("workers") == {"workers": []}  # the stopped instance left the registry


def test_second_signal_skips_the_grace_period(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    with worker_process(cli, "--workers", "1", "--grace", "60") as proc:
        task_id = cli.submit("time.sleep", {"seconds": 120})
        wait_for_state(cli, task_id, {"running"})
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # waiting for the running task, as the grace allows
        code, out, err, _ = stop(proc, 20)
    assert code == 0, err
    assert time.monotonic() - began < 15
    assert "stopping now" in out
    record = cli.json("status", task_id)
    assert record["state"] == "queued"  # handed back: another worker will run it


def test_processes_start_several_workers(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    with worker_process(cli, "--processes", "2", "--workers", "1", "--grace", str(GRACE)) as proc:
        ids = [cli.submit("time.sleep", {"seconds": 0.05}) for _ in range(4)]
        for task_id in ids:
            assert wait_for_state(cli, task_id, {"succeeded", "dead"})["state"] == "succeeded"
        deadline = time.monotonic() + DEADLINE
        while len({w["instance"] for w in cli.json("workers")["workers"]}) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        code, out, _err, took = stop(proc, GRACE + 10)
    assert code == 0
    assert took < GRACE + 2
    assert "started 2 worker processes" in out
    assert out.count("stopped") == 2


def test_worker_with_bad_settings_exits_2(tmp_path: Path) -> None:
    result = Cli(tmp_path).invoke("worker", "--workers", "9", "--max-workers", "3")
    assert result.exit_code == 2
    assert "max_workers" in result.stderr


def test_start_line_hides_broker_passwords() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("postgresql://me:pw@db/tasks") == "postgresql://me:***@db/tasks"
    assert redact("sqlite:///taskengine.db") == "sqlite:///taskengine.db"


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_children_stop_by_themselves_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    out_path = tmp_path / "supervisor.out"
    children: list[int] = []
    with out_path.open("w") as out:
        # stdout to a file: the children keep it open after the supervisor is gone
        supervisor = subprocess.Popen(
            [
                *(sys.executable, "-m", "taskengine", "--broker", cli.url, "worker"),
                *("--processes", "2", "--workers", "1", "--grace", "1"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while "started 2 worker processes: pids " not in out_path.read_text():
            assert supervisor.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.05)
        line = out_path.read_text().split("started 2 worker processes: pids ")[1].splitlines()[0]
        children = [int(pid) for pid in line.split(", ")]
        ids = [cli.submit("time.sleep", {"seconds": 600}) for _ in range(2)]
        for task_id in ids:
            wait_for_state(cli, task_id, {"running"})
        supervisor.kill()  # SIGKILL: no chance to forward anything
        supervisor.wait(10)

        deadline = time.monotonic() + DEADLINE
        while any(alive(pid) for pid in children):
            assert time.monotonic() < deadline, (
                f"children still running {DEADLINE} s after the supervisor died: "
                + out_path.read_text()[-3000:]
            )
            time.sleep(0.1)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(10)
        for pid in children:  # leftovers of a failed run, by their own PIDs
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    output = out_path.read_text()
    assert output.count("supervisor is gone: stopping gracefully") == 2, output
    assert "Traceback" not in output
    for task_id in ids:
        record = cli.json("status", task_id)
        # handed back, not left running until its lease expires: no attempt spent
        assert (record["state"], record["attempt"]) == ("queued", 0), record


@pytest.mark.parametrize("processes", ["1", "2"])
def test_worker_refuses_a_bad_queue_name_before_starting(tmp_path: Path, processes: str) -> None:
    cli = Cli(tmp_path)
    # a real process: one that wrongly starts is killed (by run's own timeout), never left
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskengine",
            "--broker",
            cli.url,
            "worker",
            "--queues",
            "good,bad queue",
            "--processes",
            processes,
            "--grace",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 2, result
    assert result.stderr.startswith("error: invalid queue 'bad queue': "), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "started" not in result.stdout


def test_a_child_killed_by_a_signal_is_replaced_and_one_that_fails_is_not() -> None:
    """A crash or the OOM killer (death by a signal) costs a replacement, not the capacity; an
    error exit (a bad setting, say) is final, or a misconfigured child would restart forever."""
    killed = subprocess.Popen([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"])
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    started: list[subprocess.Popen[bytes]] = []

    def restart(index: int) -> subprocess.Popen[bytes]:
        assert index == 0  # the killed child's place
        started.append(subprocess.Popen([sys.executable, "-c", "pass"]))
        return started[-1]

    children = [killed, failing]
    codes = wait_all(children, restart)

    assert len(started) == 1
    assert children == [started[0], failing]
    assert codes == [0, 2]
