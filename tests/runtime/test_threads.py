"""The daemon thread pool of sync handlers: results, bounds, cancellation, and exit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError, wait

import pytest

from taskengine.runtime.threads import DaemonThreadPool


def test_results_and_errors_reach_the_futures() -> None:
    pool = DaemonThreadPool(2)
    try:
        assert pool.submit(pow, 2, 10).result(10) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(10)
    finally:
        pool.shutdown()


def test_no_more_than_max_workers_run_at_once_and_threads_are_daemons() -> None:
    pool = DaemonThreadPool(3)
    lock = threading.Lock()
    running = peak = 0
    release = threading.Event()
    daemons: list[bool] = []

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            daemons.append(threading.current_thread().daemon)
        release.wait(10)
        with lock:
            running -= 1

    futures = [pool.submit(job) for _ in range(10)]
    deadline = time.monotonic() + 10
    while peak < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    done, _ = wait(futures, timeout=10)
    pool.shutdown()
    assert len(done) == 10
    assert peak == 3
    assert all(daemons)


def test_idle_threads_are_reused() -> None:
    pool = DaemonThreadPool(8)
    names = {pool.submit(lambda: threading.current_thread().name).result(10) for _ in range(20)}
    pool.shutdown()
    assert len(names) == 1


def test_shutdown_cancels_what_waits_and_does_not_wait_for_a_running_thread() -> None:
    pool = DaemonThreadPool(1)
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        stop.wait(30)

    running = pool.submit(spin)
    queued = pool.submit(pow, 2, 2)
    assert started.wait(10)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    with pytest.raises(CancelledError):
        queued.result(0)
    assert not running.done()
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)
    stop.set()
    assert running.result(10) is None


SPINNER = """
import sys
from taskengine.runtime.threads import DaemonThreadPool

def spin():
    while True:
        pass

pool = DaemonThreadPool(2)
pool.submit(spin)
pool.shutdown(wait=False, cancel_futures=True)
print("main done", flush=True)
"""


def test_a_thread_that_never_returns_does_not_keep_the_process_alive() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SPINNER], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "main done\n"
