"""The engine processes of `worker --processes`: forked once the engine is loaded, each in its
own process group, reporting its exit code (or the signal that ended it) like a Popen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskengine.cli.forked import ForkedChild

pytestmark = pytest.mark.slow
DEADLINE = 30.0


def run_script(script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter (forking this one, with its threads, would not be
    what the supervisor does)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=DEADLINE
    )


def test_a_forked_worker_runs_the_command_line_and_exits_with_its_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    done = run_script(
        f"""
import os, time
from taskengine.cli.forked import can_fork, fork_worker, preload
assert can_fork()
preload({url!r})
child = fork_worker(["--broker", {url!r}, "worker", "--queues", "bad queue"])
print("own group", os.getpgid(child.pid) == child.pid if child.poll() is None else "gone")
while child.poll() is None:
    time.sleep(0.01)
print("code", child.returncode)
"""
    )
    assert "code 2" in done.stdout, done
    assert "own group False" not in done.stdout
    assert done.stderr.startswith("error: invalid queue 'bad queue': "), done.stderr


def test_a_forked_child_ended_by_a_signal_says_which() -> None:
    pid = os.fork()
    if pid == 0:  # the child does nothing but end itself
        os.kill(os.getpid(), signal.SIGKILL)
    child = ForkedChild(pid)
    deadline = time.monotonic() + DEADLINE
    while child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert child.poll() == -signal.SIGKILL
    child.send_signal(signal.SIGTERM)  # gone and waited for: nothing to signal, no error


def test_the_supervisors_children_run_the_worker_after_it_loaded_the_engine(
    tmp_path: Path,
) -> None:
    """Forked, not started anew: a child is a copy of the supervisor (same command line), so the
    interpreter's start and the engine's imports are paid once."""
    url = f"sqlite:///{tmp_path}/t.db"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "taskengine", "--broker", url, "worker", "--processes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert supervisor.stdout is not None
        line = supervisor.stdout.readline()
        assert line.startswith("started 2 worker processes: pids "), line
        pids = [int(p) for p in line.split("pids ")[1].split(", ")]
        own = Path(f"/proc/{supervisor.pid}/cmdline").read_bytes()
        for pid in pids:
            assert Path(f"/proc/{pid}/cmdline").read_bytes() == own
        started = 0
        while started < 2:  # a SIGTERM before a child's handlers are set would end it at once
            line = supervisor.stdout.readline()
            assert line, "the supervisor's output ended before both children started"
            started += " started: " in line
    finally:
        supervisor.send_signal(signal.SIGTERM)
        out, _ = supervisor.communicate(timeout=DEADLINE)
    assert supervisor.returncode == 0, out
    assert sum(line.endswith(" stopped") for line in out.splitlines()) == 2, out
