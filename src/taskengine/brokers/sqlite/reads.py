"""The read operations: run on the read connection's own thread, each in one read transaction.

WAL lets them run beside the writer; a read transaction makes each answer one consistent
snapshot (a record and its history never disagree).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from taskengine.brokers.base import CountRow, InstanceReport, Page, TaskFilter
from taskengine.brokers.sqlite import queries as q
from taskengine.brokers.sqlite.codec import RECORD_COLUMNS, json_list, limit_from_row, records
from taskengine.brokers.sqlite.store import StoreGuard
from taskengine.errors import BrokerUnavailable
from taskengine.model import Priority, TaskRecord, TaskState
from taskengine.model.limits import Limit
from taskengine.model.serializer import unpack
from taskengine.model.worker import WorkerInfo

T = TypeVar("T")


def snapshot(read: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """Wrap `read` in BEGIN / COMMIT so all its statements see one snapshot."""

    def run(conn: sqlite3.Connection) -> T:
        conn.execute("BEGIN")
        try:
            return read(conn)
        finally:
            conn.execute("COMMIT")

    return run


def get(conn: sqlite3.Connection, ids: Sequence[str]) -> list[TaskRecord | None]:
    """Each task's record with its history, None where unknown, in input order."""
    found = {
        r.id: r for r in records(conn, conn.execute(q.SELECT_RECORDS, (json_list(ids),)).fetchall())
    }
    return [found.get(task_id) for task_id in ids]


def list_tasks(
    conn: sqlite3.Connection, filter: TaskFilter, limit: int, cursor: str | None
) -> Page:
    """Matching tasks newest id first; next_cursor is set when more remain."""
    sql, params = list_query(filter, limit + 1, cursor)
    rows = conn.execute(sql, params).fetchall()
    items = records(conn, rows[:limit])
    return Page(items, items[-1].id if len(rows) > limit else None)


def list_query(filter: TaskFilter, limit: int, cursor: str | None) -> tuple[str, list[Any]]:
    """Build the list query with only the conditions the filter sets.

    Inputs: the filter, `limit`, `cursor`. Output: SQL selecting RECORD_COLUMNS of matching
    tasks, newest id first. Invariant: ids sort by creation time, so `id < cursor` is a stable
    keyset cursor and the primary key (tasks_dead for dead letters) gives the order, no sort.
    """
    where: list[str] = []
    params: list[Any] = []

    def member(column: str, values: frozenset[Any] | None) -> None:
        if values is not None:
            where.append(f"{column} IN (SELECT value FROM json_each(?))")
            params.append(json_list(sorted(values)))

    if cursor is not None:
        where.append("id < ?")
        params.append(cursor)
    if filter.states == frozenset({TaskState.DEAD}):
        where.append("state = 'dead'")  # a literal, so the partial index tasks_dead serves it
    else:
        member("state", None if filter.states is None else frozenset(map(str, filter.states)))
    member("type", filter.types)
    member("queue", filter.queues)
    member(
        "priority", None if filter.priorities is None else frozenset(map(int, filter.priorities))
    )
    if filter.workflow is not None:
        where.append("workflow = ?")
        params.append(filter.workflow)
    if filter.created_after is not None:
        where.append("created_at >= ?")
        params.append(filter.created_after)
    if filter.created_before is not None:
        where.append("created_at < ?")
        params.append(filter.created_before)
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    params.append(limit)
    return f"SELECT {RECORD_COLUMNS} FROM tasks {condition} ORDER BY id DESC LIMIT ?", params


def counts(conn: sqlite3.Connection) -> list[CountRow]:
    """Count tasks per (queue, state, priority), with the oldest creation time of queued ones."""
    return [
        CountRow(queue, TaskState(state), Priority(priority), count, oldest)
        for queue, state, priority, count, oldest in conn.execute(q.COUNTS)
    ]


def paused(conn: sqlite3.Connection) -> set[str]:
    """The paused queue names."""
    return {row[0] for row in conn.execute(q.SELECT_PAUSED)}


def limits(conn: sqlite3.Connection) -> list[Limit]:
    """The stored limits by (scope, name)."""
    return [limit_from_row(row) for row in conn.execute(q.SELECT_LIMITS)]


def workers(conn: sqlite3.Connection, seen_since: float) -> list[WorkerInfo]:
    """Workers seen at or after `seen_since`, by id."""
    return [unpack(row[0], WorkerInfo) for row in conn.execute(q.SELECT_WORKERS, (seen_since,))]


def has_controls(conn: sqlite3.Connection, instance: str) -> bool:
    """Whether commands wait for `instance`."""
    return bool(conn.execute(q.SELECT_CONTROLS + " LIMIT 1", (instance,)).fetchone())


def instances(conn: sqlite3.Connection, now: float) -> list[InstanceReport]:
    """The reports not expired at `now`, by instance."""
    return [
        InstanceReport(instance, expires_at, bytes(data))
        for instance, expires_at, data in conn.execute(q.SELECT_INSTANCES, (now,))
    ]


class Reader:
    """Owns the read connection and the one thread that uses it."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], guard: StoreGuard) -> None:
        self._connect = connect
        self._guard = guard
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def start(self) -> None:
        """Open the read connection on its thread."""
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(1, thread_name_prefix="taskengine-sqlite-reader")
        try:
            self._conn = await loop.run_in_executor(pool, self._open)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        self._pool = pool

    async def run(self, read: Callable[[sqlite3.Connection], T]) -> T:
        """Run `read` on the read thread inside one read transaction, once the store guard
        found the store still the one opened (a removed store would answer stale data)."""
        pool, conn = self._pool, self._conn
        if pool is None or conn is None:
            raise BrokerUnavailable("the SQLite broker is not running")
        return await asyncio.get_running_loop().run_in_executor(pool, self._checked, read, conn)

    def _checked(self, read: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
        self._guard.check()
        try:
            return snapshot(read)(conn)
        except sqlite3.Error as exc:
            failure = self._guard.fault(exc)
            if failure is exc:
                raise
            raise failure from exc

    async def stop(self) -> None:
        """Close the read connection and end its thread once running reads are done."""
        pool, conn = self._pool, self._conn
        self._pool = self._conn = None
        if pool is None or conn is None:
            return
        await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        pool.shutdown(wait=False)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = 1")
        return conn
