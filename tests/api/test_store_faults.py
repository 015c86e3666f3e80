"""A real `taskengine serve` whose SQLite store is removed, replaced, corrupted or frozen.

Whatever happens to the files, the server never acknowledges a submit it did not store: it
answers 503 `broker_unavailable` naming the store, `/readyz` answers 503 while writes fail, one
log line names the store path, and the process neither dies nor hangs (SIGTERM still stops it).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, running
from tests.brokers.test_sqlite_store import SUFFIXES, corrupt_tasks_pages

# Due in an hour: no worker runs it, so shutdown has nothing to hand back to the lost store.
PRIMES = {"type": "cpu.primes", "payload": {"limit": 10}, "delay": 3600}
WAIT = 30.0  # generous: a condition, not a speed


def until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def store_files(server: Server) -> list[str]:
    return [str(server.db_path) + suffix for suffix in SUFFIXES]


def assert_refused(response: httpx.Response, server: Server, reason: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "broker_unavailable", error
    assert str(server.db_path) in error["message"], error
    assert reason in error["message"], error


def logged_about_store(server: Server) -> bool:
    return any(
        line.get("level") == "error" and str(server.db_path) in str(line.get("event"))
        for line in server.log_lines()
    )


def test_a_removed_store_refuses_submits_fails_readiness_and_logs_it(tmp_path: Path) -> None:
    with running(tmp_path, name="gone") as srv, srv.client() as c:
        stored = c.post("/api/tasks", json=PRIMES)
        assert stored.status_code == 201
        assert httpx.get(f"{srv.url}/readyz", timeout=WAIT).status_code == 200
        for name in store_files(srv):
            os.unlink(name)
        for _ in range(5):
            assert_refused(c.post("/api/tasks", json=PRIMES), srv, "removed")
        assert httpx.get(f"{srv.url}/readyz", timeout=WAIT).status_code == 503
        until(lambda: logged_about_store(srv), "an error line naming the store")
        submit = ["submit", "cpu.primes", "--payload", '{"limit": 10}']
        cli = subprocess.run(
            [sys.executable, "-m", "taskengine", "--api", srv.url, *submit],
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert cli.returncode == 4, cli.stderr  # EXIT_UNAVAILABLE
        assert str(srv.db_path) in cli.stderr, cli.stderr
        assert not srv.db_path.exists()  # no empty store was made under its name
    assert "Fatal Python error" not in srv.stderr()


def test_a_replaced_store_refuses_submits_and_fails_readiness(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with running(tmp_path, name="swapped") as srv, srv.client() as c:
        assert c.post("/api/tasks", json=PRIMES).status_code == 201
        conn = sqlite3.connect(other)
        conn.execute("CREATE TABLE unrelated (x)")
        conn.commit()
        conn.close()
        os.replace(other, srv.db_path)
        assert_refused(c.post("/api/tasks", json=PRIMES), srv, "replaced")
        assert httpx.get(f"{srv.url}/readyz", timeout=WAIT).status_code == 503
        until(lambda: logged_about_store(srv), "an error line naming the store")


def test_corruption_found_while_serving_is_503_naming_the_store(tmp_path: Path) -> None:
    with (
        running(tmp_path, name="corrupt", args=("--no-workers",)) as srv,
        srv.client() as c,
    ):
        task_id = c.post("/api/tasks", json=PRIMES).json()["id"]
        corrupt_tasks_pages(str(srv.db_path))
        assert_refused(c.get(f"/api/tasks/{task_id}"), srv, "malformed")
        assert_refused(c.post("/api/tasks", json=PRIMES), srv, "malformed")
        until(lambda: logged_about_store(srv), "an error line naming the store")


def chattr(flag: str, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chattr", flag, *names], capture_output=True, text=True, timeout=WAIT, check=False
    )


@pytest.fixture
def immutable_ok(tmp_path: Path) -> None:
    """Skip unless this process may set the immutable flag on files in tmp_path."""
    probe = tmp_path / "probe"
    probe.touch()
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    made = chattr("+i", [str(probe)])
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here (needs root, ext4/xfs): {made.stderr.strip()}")
    chattr("-i", [str(probe)])


def test_a_frozen_store_refuses_submits_and_never_dies_silently(
    tmp_path: Path, immutable_ok: None
) -> None:
    """chattr +i on the db, -wal and -shm: writes to the mmap'd WAL index would be SIGBUS.

    The guard refuses before SQLite touches the files, so the server answers 503 and stops
    cleanly. A check that passed just before the freeze can still meet SIGBUS (ADR 0016): then,
    and only then, the server may die, with a trace in its log and no 201 before it.
    """
    srv = Server(tmp_path, name="frozen").start()
    names = store_files(srv)
    assert srv.proc is not None
    try:
        with srv.client() as c:
            kept = c.post("/api/tasks", json=PRIMES).json()["id"]
            assert chattr("+i", names).returncode == 0
            try:
                for _ in range(5):
                    assert_refused(c.post("/api/tasks", json=PRIMES), srv, "not writable")
                assert httpx.get(f"{srv.url}/readyz", timeout=WAIT).status_code == 503
                until(lambda: logged_about_store(srv), "an error line naming the store")
            except httpx.TransportError:
                assert srv.proc.wait(WAIT) == -signal.SIGBUS, srv.stderr()[-4000:]
                assert "Fatal Python error: Bus error" in srv.stderr(), srv.stderr()[-4000:]
                return
        code = srv.stop()  # closing must not checkpoint into the frozen files
        assert "Fatal Python error" not in srv.stderr(), srv.stderr()[-4000:]
        assert code == 0, srv.stderr()[-4000:]
    finally:
        chattr("-i", names)
        srv.kill()
    conn = sqlite3.connect(srv.db_path)
    try:
        assert conn.execute("SELECT count(*) FROM tasks WHERE id = ?", (kept,)).fetchone() == (1,)
    finally:
        conn.close()


def test_a_fatal_signal_leaves_a_trace_in_the_log(tmp_path: Path) -> None:
    """SIGBUS from the -shm map cannot be ruled out (ADR 0016): at least it is never silent."""
    srv = Server(tmp_path, name="fatal").start()
    try:
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGBUS)  # our own child, by its PID
        assert srv.proc.wait(WAIT) == -signal.SIGBUS
    finally:
        srv.kill()
    err = srv.stderr()
    assert "Fatal Python error: Bus error" in err, err[-4000:]
    assert "most recent call first" in err, err[-4000:]
