"""The SQLite broker: durable and shared by processes on one file; the default broker.

Writes go to one writer thread that group-commits everything pending in one `BEGIN IMMEDIATE`
transaction (see writer.py); reads go to a read connection on its own thread (WAL lets it read
beside the writer). The event loop never touches SQLite. "One round trip" below means one hop
to the writer or reader thread; the writer may share that hop's commit with other calls.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Sequence

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    CancelResult,
    Capabilities,
    CountRow,
    EnqueueResult,
    Page,
    ReplayResult,
    TaskFilter,
    check_lease_for,
    check_limit,
)
from taskengine.brokers.sqlite import admin, hot, reads
from taskengine.brokers.sqlite.doorbell import Doorbell
from taskengine.brokers.sqlite.reads import Reader
from taskengine.brokers.sqlite.schema import check_synchronous, connect, create_schema
from taskengine.brokers.sqlite.store import StoreGuard
from taskengine.brokers.sqlite.writer import Writer
from taskengine.errors import BrokerUnavailable, ConfigurationError
from taskengine.model import Lease, LeaseStatus, Outcome, Task, TaskRecord, TaskState
from taskengine.model.worker import WorkerInfo

POLL_INTERVAL = 0.03  # seconds between checks for commits by other processes (doorbell missed)
_CAPABILITIES = Capabilities(durable=True, shared=True, push_wakeup=True)


class SqliteBroker:
    """A broker on one SQLite file (WAL), safe for many processes sharing the file."""

    def __init__(
        self,
        path: str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        check_limit(max_depth, "max_depth")
        try:
            busy_timeout_ms = int(busy_timeout_ms)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"busy_timeout_ms must be an integer: {busy_timeout_ms!r}"
            ) from None
        if busy_timeout_ms < 0:
            raise ConfigurationError(f"busy_timeout_ms must be >= 0: {busy_timeout_ms}")
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ConfigurationError(f"the SQLite broker needs a file path, got {path!r}")
        self.path = path
        self.max_depth = max_depth
        self.synchronous = check_synchronous(synchronous)
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._starting = asyncio.Lock()
        self._work = asyncio.Event()
        self._doorbell = Doorbell(path)  # wakes waiters in other processes (doorbell.py)
        self._seen_version: int | None = None  # data_version as of the last reserve or wake-up

    @property
    def capabilities(self) -> Capabilities:
        """Durable, shared across processes; other processes' commits ring a doorbell."""
        return _CAPABILITIES

    @property
    def commit_count(self) -> int:
        """How many transactions the writer committed since start (one per group)."""
        return 0 if self._writer is None else self._writer.commits

    async def start(self) -> None:
        """Open both connections (WAL) and create the schema if missing. Idempotent.

        Three round trips (open, schema, recording the files' identity for the store guard)
        plus opening the reader; atomic: the schema is created in one transaction. On failure
        nothing keeps running and the error is raised.
        """
        async with self._starting:
            if self._writer is not None:
                return
            opener = functools.partial(
                connect,
                self.path,
                synchronous=self.synchronous,
                busy_timeout_ms=self.busy_timeout_ms,
            )
            guard = StoreGuard(self.path)
            writer, reader = Writer(opener, guard), Reader(opener, guard)
            try:
                await writer.start()
                try:
                    await writer.submit(create_schema)
                    await reader.start()
                    await writer.submit(lambda _: guard.capture(), in_transaction=False)
                except BaseException:
                    await writer.stop()
                    raise
            except sqlite3.Error as exc:
                raise BrokerUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from exc
            self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Commit every write already submitted, then close both connections. Idempotent."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        self._doorbell.close()
        if writer is not None:
            await writer.stop()
        if reader is not None:
            await reader.stop()

    # -- hot path ---------------------------------------------------------------------------

    async def enqueue(self, tasks: Sequence[Task], now: float) -> list[EnqueueResult]:
        """Store tasks as queued, one result per task in input order.

        One round trip (three statements); atomic: the whole batch is stored or, on QueueFull
        (or any error), nothing is. Duplicates by id, then idempotency key, stored or earlier
        in the batch, return the first task's id with created=False.
        """
        writer = self._write()
        if not tasks:
            return []
        results = await writer.submit(
            functools.partial(hot.enqueue, tasks=list(tasks), now=now, max_depth=self.max_depth)
        )
        if any(result.created for result in results):
            self._woken()
        return results

    async def reserve(
        self,
        worker_id: str,
        limit: int,
        lease_for: float,
        now: float,
        queues: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` due tasks of unpaused queues, lowest (order_key, id) first.

        One round trip: one UPDATE ... RETURNING under the write lock (plus one history query),
        so no task is claimed twice, across processes too. Atomic. Leases come back in claim
        order; each has its own random token and expires at `now + lease_for`.
        """
        check_limit(limit)
        check_lease_for(lease_for)
        writer = self._write()
        wanted = None if queues is None else list(queues)
        leases, version = await writer.submit(
            functools.partial(
                hot.reserve,
                worker_id=worker_id,
                limit=limit,
                lease_for=lease_for,
                now=now,
                queues=wanted,
            )
        )
        self._seen_version = version
        return leases

    async def extend(
        self, leases: Sequence[Lease], lease_for: float, now: float
    ) -> list[LeaseStatus]:
        """Push each held lease to `now + lease_for`; aligned statuses (HELD, CANCEL_REQUESTED
        when a cancel was asked: still extended, or LOST when the token is no longer current).

        One round trip; atomic (all held leases move together).
        """
        check_lease_for(lease_for)
        writer = self._write()
        if not leases:
            return []
        return await writer.submit(
            functools.partial(hot.extend, leases=list(leases), lease_for=lease_for, now=now)
        )

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply a mixed batch of outcomes, each only if its token is current (aligned bools).

        One round trip (one select, one executemany per statement kind); atomic. A refused
        outcome (False) changes nothing; a second outcome for the same lease in the batch is
        refused. History lines go to the insert-only attempts table.
        """
        writer = self._write()
        if not outcomes:
            return []
        applied = await writer.submit(
            functools.partial(hot.settle, outcomes=list(outcomes), now=now)
        )
        if any(
            ok and o.state is TaskState.QUEUED and (o.run_at is None or o.run_at <= now)
            for ok, o in zip(applied, outcomes, strict=True)
        ):
            self._woken()
        return applied

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Requeue (or cancel, if asked) up to `limit` running tasks whose lease expired before
        `now`, oldest expiry first, recording the lost attempt. One round trip; atomic."""
        check_limit(limit)
        writer = self._write()
        ids = await writer.submit(functools.partial(hot.requeue_expired, now=now, limit=limit))
        if ids:
            self._woken()
        return ids

    async def wait_for_work(self, timeout: float) -> None:
        """Return when this process queued work, when another process rang the doorbell, when
        another connection committed since the last reserve (checked every POLL_INTERVAL via
        data_version, should a ring be missed), or after `timeout`."""
        writer = self._write()
        self._doorbell.listen(self._work.set)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        while True:
            if self._work.is_set():
                self._work.clear()
                return
            version = await writer.submit(hot.data_version, in_transaction=False)
            if self._seen_version is None:
                self._seen_version = version
            elif version != self._seen_version:
                self._seen_version = version
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._work.wait(), min(POLL_INTERVAL, remaining))
            except TimeoutError:
                continue

    def _woken(self) -> None:
        """Work became ready: wake this process's waiters and ring the other processes'."""
        self._work.set()
        self._doorbell.ring()

    # -- admin ------------------------------------------------------------------------------

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Each task's record with its history (None where unknown), in input order.

        One round trip to the reader, two queries in one snapshot.
        """
        reader = self._read()
        if not ids:
            return []
        return await reader.run(functools.partial(reads.get, ids=list(ids)))

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Matching tasks newest first (by id), at most `limit`, with ids below `cursor`.

        One round trip to the reader, two queries in one snapshot; next_cursor is the last
        id when more tasks match.
        """
        check_limit(limit)
        reader = self._read()
        return await reader.run(
            functools.partial(reads.list_tasks, filter=filter, limit=limit, cursor=cursor)
        )

    async def counts(self) -> list[CountRow]:
        """Task counts per (queue, state, priority), ordered so; one round trip (a full scan)."""
        return await self._read().run(reads.counts)

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued tasks at once and flag running ones for their worker's next extend.

        One round trip; atomic; aligned with `ids` (a repeated id sees the first's effect).
        """
        writer = self._write()
        if not ids:
            return []
        return await writer.submit(functools.partial(admin.cancel, ids=list(ids), now=now))

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued, due now, attempt count 0, history kept.

        One round trip; atomic; aligned with `ids` (a repeated id sees the first's effect).
        """
        writer = self._write()
        if not ids:
            return []
        results = await writer.submit(functools.partial(admin.replay, ids=list(ids), now=now))
        if ReplayResult.REPLAYED in results:
            self._woken()
        return results

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` terminal tasks in `states` finished before the cutoff (oldest
        first) with their history; return how many. One round trip; atomic."""
        check_limit(limit)
        writer = self._write()
        return await writer.submit(
            functools.partial(
                admin.purge, states=list(states), finished_before=finished_before, limit=limit
            )
        )

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop `reserve` (of every process) from taking these queues. One round trip."""
        await self._write().submit(functools.partial(admin.pause, queues=list(queues)))

    async def resume(self, queues: Sequence[str]) -> None:
        """Let `reserve` take these queues again and wake local waiters. One round trip."""
        await self._write().submit(functools.partial(admin.resume, queues=list(queues)))
        self._woken()

    async def paused(self) -> set[str]:
        """The paused queue names. One round trip to the reader."""
        return await self._read().run(reads.paused)

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace these workers by id. One round trip; atomic."""
        await self._write().submit(functools.partial(admin.record_workers, workers=list(workers)))

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove these workers. One round trip; atomic."""
        await self._write().submit(functools.partial(admin.forget_workers, ids=list(ids)))

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Workers last seen at or after `seen_since`, by id. One round trip to the reader."""
        return await self._read().run(functools.partial(reads.workers, seen_since=seen_since))

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take `name` if free or expired, renew it if `holder` has it; True if held.

        One round trip, one atomic upsert: two processes never both hold `name`.
        """
        return await self._write().submit(
            functools.partial(admin.leader, name=name, holder=holder, ttl=ttl, now=now)
        )

    async def resign(self, name: str, holder: str) -> None:
        """Free `name` if `holder` holds it. One round trip."""
        await self._write().submit(functools.partial(admin.resign, name=name, holder=holder))

    # -- internals --------------------------------------------------------------------------

    def _write(self) -> Writer:
        if self._writer is None:
            raise BrokerUnavailable("the SQLite broker is not started or already closed")
        return self._writer

    def _read(self) -> Reader:
        if self._reader is None:
            raise BrokerUnavailable("the SQLite broker is not started or already closed")
        return self._reader
