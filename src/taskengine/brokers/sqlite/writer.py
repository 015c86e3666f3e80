"""The one writer thread of a SQLite broker: group commit of queued write operations.

Async callers submit operations (plain functions of the connection). The thread takes everything
pending, runs it in one `BEGIN IMMEDIATE` transaction with each operation inside its own
SAVEPOINT (a failing operation is rolled back alone and its caller gets the exception), commits
once, then hands all the answers back to each event loop with one `call_soon_threadsafe`.
So N concurrent writers cost one fsync, not N.

Before each group begins and again before it commits, the store guard checks that the files are
still the ones opened and writable (store.py): a group on a removed store is refused, never
acknowledged. Storage faults reach callers as BrokerUnavailable naming the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from taskengine.brokers.sqlite.store import StoreGuard
from taskengine.errors import BrokerUnavailable

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

MAX_GROUP = 512  # operations per transaction: bounds the time the write lock is held
BEGIN_ATTEMPTS = 3  # a begin gives up after busy_timeout x this, as three SQLite waits did
# Waits between tries of a lock another process holds. SQLite's own busy handler sleeps 1, 2,
# 5, 10, 15, 20, 25 ms...: a commit of 0.5 ms by another process cost a wait of up to 25 ms.
_RETRY_FIRST, _RETRY_MOST = 0.0001, 0.002
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})

log = logging.getLogger("taskengine.brokers.sqlite")


@dataclass(eq=False)
class _Item:
    op: Operation[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    in_transaction: bool = True
    answer: tuple[bool, Any] = field(default=(False, None))


_STOP = object()


class Writer:
    """Owns the write connection and the thread that runs every write, grouped per commit."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], guard: StoreGuard) -> None:
        self._connect = connect
        self._guard = guard
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._closing = False
        self._patience = 0.0  # seconds a begin waits for another process's lock, per try
        self.commits = 0  # committed transactions, for tests and metrics
        self.operations = 0  # operations applied (committed or rolled back alone)

    async def start(self) -> None:
        """Open the connection on a new thread; raise what opening it raised."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name="taskengine-sqlite-writer", daemon=True
        )
        self._thread.start()
        await ready

    def submit(self, op: Operation[T], *, in_transaction: bool = True) -> asyncio.Future[T]:
        """Queue `op` for the next group; the future resolves after its group committed."""
        if self._closing or self._thread is None:
            raise BrokerUnavailable("the SQLite broker is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Item(op, future, loop, in_transaction))
        return future

    async def stop(self) -> None:
        """Run everything already queued, then close the connection and end the thread."""
        if self._thread is None or self._stopped is None:
            return
        if not self._closing:
            self._closing = True
            self._queue.put(_STOP)
        await asyncio.shield(self._stopped)
        self._thread = None

    # -- the thread -------------------------------------------------------------------------

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._closing = True
            _call(loop, _settle_future, ready, (False, exc))
            _call(loop, _settle_future, self._stopped, (True, None))
            return
        _call(loop, _settle_future, ready, (True, None))
        self._patience = int(conn.execute("PRAGMA busy_timeout").fetchone()[0]) / 1000
        try:
            stop = False
            while not stop:
                items, stop = self._take()
                try:
                    self._process(conn, items)
                except Exception as exc:  # a broken connection or a bug: fail this group only
                    _abandon(conn, items, self._unavailable(exc, "write"))
        finally:
            closable = self._guard.closable()
            if closable:
                conn.close()
            else:
                log.warning(
                    "SQLite store %s is not writable: its write connection stays open until the "
                    "process exits (closing it would write the WAL index map: SIGBUS)",
                    self._guard.path,
                    extra={"store": self._guard.path},
                )
            self._fail_leftovers()
            _call(loop, _settle_future, self._stopped, (True, None))
            if not closable:
                # The kernel closes the file at exit and the next opener recovers the WAL, as
                # after a crash; a daemon thread's frame is never freed, so neither is `conn`.
                threading.Event().wait()

    def _take(self) -> tuple[list[_Item], bool]:
        """Block for one item, then drain what is pending (up to MAX_GROUP)."""
        items: list[_Item] = []
        first = self._queue.get()
        if first is _STOP:
            return items, True
        assert isinstance(first, _Item)
        items.append(first)
        while len(items) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return items, True
            assert isinstance(item, _Item)
            items.append(item)
        return items, False

    def _process(self, conn: sqlite3.Connection, items: list[_Item]) -> None:
        # An operation whose caller was cancelled before the group began is not applied.
        live = [item for item in items if not item.future.cancelled()]
        try:
            self._guard.check()
        except BrokerUnavailable as exc:
            for item in live:
                item.answer = (False, exc)
        else:
            grouped = [item for item in live if item.in_transaction]
            if grouped:
                self._transaction(conn, grouped)
            for item in live:
                if not item.in_transaction:
                    item.answer = _attempt(item.op, conn)
            for item in live:
                if not item.answer[0]:
                    item.answer = (False, self._guard.fault(item.answer[1]))
        self.operations += len(live)
        _deliver(live)

    def _transaction(self, conn: sqlite3.Connection, items: list[_Item]) -> None:
        """Run `items` in one transaction and commit once; answers are set on the items."""
        pending = items
        while pending:
            error = _begin(conn, self._patience)
            if error is not None:
                for item in pending:
                    item.answer = (False, error)
                return
            if len(pending) == 1:  # alone: no SAVEPOINT, a failure rolls back everything
                pending[0].answer = _attempt(pending[0].op, conn)
                if not pending[0].answer[0]:
                    _rollback(conn)
                    return
            else:
                culprit = _run_each(conn, pending)
                if culprit is not None:
                    # The others were undone with it: run them again, without the culprit.
                    pending = [item for item in pending if item is not culprit]
                    continue
            try:
                # Again: a group runs for milliseconds, and COMMIT writes the -shm map.
                self._guard.check()
                conn.execute("COMMIT")
                self.commits += 1
            except (sqlite3.Error, BrokerUnavailable) as exc:
                _rollback(conn)
                failure = self._unavailable(exc, "commit")
                for item in pending:
                    if item.answer[0]:
                        item.answer = (False, failure)
            else:
                self._guard.succeeded()
            return

    def _unavailable(self, exc: BaseException, doing: str) -> BaseException:
        """BrokerUnavailable naming the store for a failed commit or group."""
        failure = self._guard.fault(exc)
        if failure is exc and not isinstance(exc, BrokerUnavailable):
            failure = BrokerUnavailable(f"SQLite store {self._guard.path}: {doing} failed: {exc}")
        return failure

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Item):
                item.answer = (False, BrokerUnavailable("the SQLite broker is closed"))
                _deliver([item])


def _run_each(conn: sqlite3.Connection, items: list[_Item]) -> _Item | None:
    """Run each item in its own SAVEPOINT; return the one that lost the whole transaction."""
    for item in items:
        conn.execute("SAVEPOINT op")
        item.answer = _attempt(item.op, conn)
        if item.answer[0]:
            conn.execute("RELEASE op")
        elif conn.in_transaction:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        else:  # SQLite rolled the whole transaction back (disk full, I/O error)
            return item
    return None


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _abandon(conn: sqlite3.Connection, items: list[_Item], failure: BaseException) -> None:
    _rollback(conn)
    for item in items:
        item.answer = (False, failure)
    _deliver(items)


def _begin(conn: sqlite3.Connection, patience: float) -> BaseException | None:
    """Take the write lock; retry while another process holds it, for up to `patience` x
    BEGIN_ATTEMPTS seconds; return the final error."""
    # SQLite's busy handler is off meanwhile: these retries are finer grained than its sleeps.
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + patience * BEGIN_ATTEMPTS
        delay = _RETRY_FIRST
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return None
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in _BUSY_CODES:
                    return exc
            if time.monotonic() >= deadline:
                return BrokerUnavailable("the SQLite store stayed locked by another process")
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MOST)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {round(patience * 1000)}")


def _attempt(op: Operation[Any], conn: sqlite3.Connection) -> tuple[bool, Any]:
    try:
        return True, op(conn)
    except Exception as exc:
        return False, exc


def _deliver(items: list[_Item]) -> None:
    """Resolve the futures: one call_soon_threadsafe per event loop per group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
    for item in items:
        by_loop.setdefault(item.loop, []).append(item)
    for loop, group in by_loop.items():
        _call(loop, _resolve, group)


def _resolve(items: list[_Item]) -> None:
    for item in items:
        _settle_future(item.future, item.answer)


def _settle_future(future: asyncio.Future[Any] | None, answer: tuple[bool, Any]) -> None:
    if future is None or future.done():
        return
    ok, value = answer
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _call(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # A closed loop raises RuntimeError: nobody is waiting for the answer any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
