"""SIGSTOP past the lease: a frozen worker's late result never overwrites the newer attempt's.

Two worker processes (one worker coroutine each). The one running a 2.5 s task is SIGSTOPped
for longer than its 2 s lease; the other requeues the task (reaper) and runs it again to
success. Then the frozen one is SIGCONTed: its run finishes, its settle is refused (fencing),
and the task keeps the newer attempt's result. The stale worker keeps working: with the
other one stopped it runs a new task, and it exits cleanly on SIGTERM.
Short form: one round; long form: five (whichever worker takes the task freezes).
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import psutil
import pytest

from taskengine.brokers import BrokerBackend
from taskengine.model import ResultStatus, TaskRecord, TaskState
from taskengine.model.records import LEASE_EXPIRED  # requeue_expired's history line
from tests.chaos.support import (
    Child,
    Children,
    RunLog,
    engine_env,
    pick,
    pid_of,
    records,
    submit,
    until,
    wait_state,
    worker_command,
)

pytestmark = pytest.mark.slow

ROUNDS = pick(1, 5)
LEASE = 2.0
TASK_SECONDS = 2.5  # longer than the lease: it finishes while its worker is frozen
SETTINGS = {"lease_for": LEASE, "heartbeat_every": 0.5, "reaper_every": 0.3, "idle_wait": 0.2}
REFUSED = "settle refused"


def refusals(child: Child) -> int:
    return sum(1 for event in child.log_events() if REFUSED in str(event.get("event")))


def sqlite_path(broker_url: str) -> Path | None:
    return Path(broker_url.removeprefix("sqlite:///")) if broker_url.startswith("sqlite") else None


def holds_write_lock(db: Path) -> bool:
    """True if another process is inside a write transaction on the SQLite file."""
    conn = sqlite3.connect(db, timeout=0.2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def freeze(child: Child, broker_url: str) -> None:
    """SIGSTOP `child`. On SQLite, not in the middle of a write transaction: a frozen process
    holding the file's write lock stops every process (SQLite's locking, not the engine's)."""
    db = sqlite_path(broker_url)
    process = psutil.Process(child.pid)
    for _ in range(20):
        child.signal(signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while process.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            time.sleep(0.001)
        if db is None or not holds_write_lock(db):
            return
        child.signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"{child.name} always held the SQLite write lock")


async def test_a_frozen_worker_cannot_overwrite_the_newer_attempt(
    broker_url: str, broker: BrokerBackend, children: Children, tmp_path: Path
) -> None:
    run_log = RunLog(tmp_path / "runs.log")
    env = engine_env(tmp_path, SETTINGS, run_log.path)
    workers = [children.start("worker", worker_command(broker_url, workers=1), env)]
    workers.append(children.start("worker", worker_command(broker_url, workers=1), env))
    await children.started_workers(workers)

    for round_ in range(1, ROUNDS + 1):
        frozen, other = await freeze_round(broker_url, broker, workers, run_log, round_)

    # The last frozen worker is healthy: alone, it runs a new task, then stops cleanly.
    await other.stop()
    [task_id] = await submit(broker, 1, 0.05)
    what = "the stale worker to run a new task"
    record = await wait_state(broker, task_id, TaskState.SUCCEEDED, 15, what, frozen.tail)
    assert record.result is not None and pid_of(record.result.worker_id) == frozen.pid
    await frozen.stop()


async def freeze_round(
    broker_url: str, broker: BrokerBackend, workers: list[Child], run_log: RunLog, round_: int
) -> tuple[Child, Child]:
    """One task; freeze its worker past the lease; the other one finishes it; thaw; the late
    settle is refused. Return (the frozen worker, the other one)."""
    [task_id] = await submit(broker, 1, TASK_SECONDS)
    await until(
        lambda: bool(run_log.runs("start", task_id)), 10, f"round {round_}: the task to start"
    )
    [(_, first_attempt, pid)] = run_log.runs("start", task_id)
    frozen = next(w for w in workers if w.pid == pid)
    other = next(w for w in workers if w is not frozen)
    freeze(frozen, broker_url)
    frozen_at = time.monotonic()

    what = f"round {round_}: the other worker to finish the task"
    record = await wait_state(broker, task_id, TaskState.SUCCEEDED, 20, what, other.tail)
    assert frozen.alive and other.alive
    check_newer_attempt_won(record, frozen, other, first_attempt)
    # the frozen worker finished nothing meanwhile (its finish line comes after SIGCONT)
    assert run_log.runs("finish", task_id) == [(task_id, first_attempt + 1, other.pid)]
    assert time.monotonic() - frozen_at > LEASE

    before = refusals(frozen)
    frozen.signal(signal.SIGCONT)
    await until(
        lambda: refusals(frozen) > before,
        10,
        f"round {round_}: the stale settle to be refused",
        diagnose=frozen.tail,
    )
    assert (task_id, first_attempt, frozen.pid) in run_log.runs("finish", task_id)
    [after] = (await records(broker, [task_id])).values()
    assert after == record, "the stale worker changed the task"
    return frozen, other


def check_newer_attempt_won(
    record: TaskRecord, frozen: Child, other: Child, first_attempt: int
) -> None:
    """Succeeded once, by the other worker's newer attempt; the frozen one's attempt is in the
    history as a lost lease."""
    assert record.state is TaskState.SUCCEEDED
    assert record.result is not None
    assert record.result.status is ResultStatus.SUCCESS
    assert record.result.attempt == record.attempt == first_attempt + 1
    assert pid_of(record.result.worker_id) == other.pid
    lines = [(h.attempt, h.status, h.error, pid_of(h.worker_id)) for h in record.history]
    assert lines == [
        (first_attempt, ResultStatus.FAILURE, LEASE_EXPIRED, frozen.pid),
        (first_attempt + 1, ResultStatus.SUCCESS, None, other.pid),
    ]
