"""The SQLite writer's CPU time per task for enqueue, reserve and settle, statement by statement.

    python -m bench.sqlite_writer_cost [--tasks 30000] [--batch 100] [--statements]

Runs the broker's write operations (brokers/sqlite/writes.py) on one thread, on a fresh store
with the broker's settings (WAL, `synchronous=FULL`), one operation per transaction as the
writer thread runs a group of one: enqueue in batches, reserve until the queue is empty, then
settle every lease as succeeded. CPU time (`time.process_time`, the fsync's system time
included) per task of each phase; `--statements` also gives each statement's share. No event
loop and no other thread, so the figure moves far less with the machine's load than an end to
end rate does.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from taskengine.brokers.sqlite import writes
from taskengine.brokers.sqlite.schema import connect, create_schema
from taskengine.model import Lease, ResultStatus, TaskResult, new_task
from taskengine.model import outcome as outcomes

T = TypeVar("T")


class _Timed:
    """A connection that adds each statement's CPU time (fetching its rows included) to a tally."""

    def __init__(self, conn: sqlite3.Connection, tally: dict[str, float]) -> None:
        self._conn = conn
        self._tally = tally

    def _run(self, method: str, sql: str, *args: Any) -> Any:
        started = time.process_time()
        cursor = getattr(self._conn, method)(sql, *args)
        rows = _Rows(cursor.fetchall()) if cursor.description else cursor
        self._tally[" ".join(sql.split())[:60]] += time.process_time() - started
        return rows

    def execute(self, sql: str, *args: Any) -> Any:
        """As sqlite3.Connection.execute, timed."""
        return self._run("execute", sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        """As sqlite3.Connection.executemany, timed."""
        return self._run("executemany", sql, *args)


class _Rows(list[Any]):
    """Rows already fetched, read like a cursor."""

    rowcount = -1

    def fetchone(self) -> Any:
        """The first row, or None."""
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        """Every row."""
        return list(self)


def measure(tasks: int, batch: int, statements: bool) -> tuple[dict[str, float], dict[str, float]]:
    """CPU seconds per task of each phase, and per statement when `statements`."""
    path = os.path.join(tempfile.mkdtemp(prefix="te-writer-cost-"), "store.db")
    raw = connect(path, synchronous="FULL", busy_timeout_ms=5000)
    raw.execute("BEGIN IMMEDIATE")
    create_schema(raw)
    raw.execute("COMMIT")
    tally: dict[str, float] = defaultdict(float)
    conn: Any = _Timed(raw, tally) if statements else raw

    def transaction(op: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SAVEPOINT op")
        answer = op()
        conn.execute("RELEASE op")
        conn.execute("COMMIT")
        return answer

    start = time.time()
    # Ids follow their creation time, as in a real run: batches a few milliseconds apart.
    batches = [
        [new_task("noop", None, now=start + i * 0.005) for _ in range(batch)]
        for i in range(tasks // batch)
    ]
    phases: dict[str, float] = {}
    began = time.process_time()
    for group in batches:
        transaction(lambda group=group: writes.enqueue(conn, group, start, 10**9))
    phases["enqueue"] = time.process_time() - began

    leased: list[list[Lease]] = []
    began = time.process_time()
    while True:
        leases = transaction(lambda: writes.reserve(conn, "w1", batch, 60.0, time.time(), None))[0]
        if not leases:
            break
        leased.append(leases)
    phases["reserve"] = time.process_time() - began

    settles = [
        [
            outcomes.succeeded(
                lease,
                TaskResult(
                    task_id=lease.task_id,
                    status=ResultStatus.SUCCESS,
                    completed_at=start,
                    duration=0.001,
                    worker_id="w1",
                    attempt=lease.record.attempt,
                ),
            )
            for lease in leases
        ]
        for leases in leased
    ]
    began = time.process_time()
    for batch_of in settles:
        applied = transaction(lambda b=batch_of: writes.settle(conn, b, time.time()))[0]
        assert all(applied)
    phases["settle"] = time.process_time() - began
    raw.close()
    return (
        {name: cpu / tasks for name, cpu in phases.items()},
        {name: cpu / tasks for name, cpu in tally.items()},
    )


def main() -> None:
    """Print the CPU time per task of each phase (and statement), with the load average."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--statements", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    phases, by_statement = measure(args.tasks, args.batch, args.statements)
    line = " ".join(f"{name} {cpu * 1e6:.1f} µs" for name, cpu in phases.items())
    print(f"{line} · total {sum(phases.values()) * 1e6:.1f} µs per task · load {load:.1f}")
    for sql, cpu in sorted(by_statement.items(), key=lambda item: -item[1]):
        if cpu * 1e6 >= 0.05:
            print(f"  {cpu * 1e6:6.1f} µs  {sql}")


if __name__ == "__main__":
    main()
