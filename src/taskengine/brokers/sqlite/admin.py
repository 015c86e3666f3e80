"""The admin half of the SQLite broker: inspection, cancel/replay/purge, pause, registry, leader.

Writes run as functions of writes.py on the writer thread, reads as functions of reads.py on
the reader thread, each in one round trip.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from taskengine.brokers.base import (
    CancelResult,
    Control,
    CountRow,
    InstanceReport,
    Page,
    ReplayResult,
    TaskFilter,
    check_limit,
)
from taskengine.brokers.sqlite import reads, writes
from taskengine.brokers.sqlite.connection import SqliteConnection
from taskengine.model import TaskRecord, TaskState
from taskengine.model.limits import Limit, check_limit_values
from taskengine.model.worker import WorkerInfo


class SqliteAdmin(SqliteConnection):
    """Inspection and control; see BrokerAdmin in brokers/base.py for the contract."""

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
        results = await writer.submit(functools.partial(writes.cancel, ids=list(ids), now=now))
        if CancelResult.CANCELLED in results:  # a dependent that runs anyway may be queued
            self._woken()
        return results

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued, due now, attempt count 0, history kept.

        One round trip; atomic; aligned with `ids` (a repeated id sees the first's effect).
        """
        writer = self._write()
        if not ids:
            return []
        results = await writer.submit(functools.partial(writes.replay, ids=list(ids), now=now))
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
                writes.purge, states=list(states), finished_before=finished_before, limit=limit
            )
        )

    async def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete finished tasks by id with their history. One round trip; atomic."""
        if not ids:
            return []
        return await self._write().submit(functools.partial(writes.delete, ids=list(ids)))

    async def purge_kept(self, now: float, limit: int) -> int:
        """Delete up to `limit` succeeded tasks whose own retention ran out before `now`
        (earliest expiry first) with their history; return how many. One round trip; atomic."""
        check_limit(limit)
        return await self._write().submit(
            functools.partial(writes.purge_kept, now=now, limit=limit)
        )

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop `reserve` (of every process) from taking these queues. One round trip."""
        await self._write().submit(functools.partial(writes.pause, queues=list(queues)))

    async def resume(self, queues: Sequence[str]) -> None:
        """Let `reserve` take these queues again and wake local waiters. One round trip."""
        await self._write().submit(functools.partial(writes.resume, queues=list(queues)))
        self._woken()

    async def paused(self) -> set[str]:
        """The paused queue names. One round trip to the reader."""
        return await self._read().run(reads.paused)

    async def send_control(self, instance: str, controls: Sequence[Control]) -> None:
        """Append commands to the instance's channel. One round trip; atomic."""
        if controls:
            await self._write().submit(
                functools.partial(writes.send_control, instance=instance, controls=list(controls))
            )

    async def take_controls(self, instance: str) -> list[Control]:
        """Remove and return the instance's commands, oldest first: a read while there are
        none (no write transaction every poll), then one atomic write that takes them."""
        if not await self._read().run(functools.partial(reads.has_controls, instance=instance)):
            return []
        return await self._write().submit(
            functools.partial(writes.take_controls, instance=instance)
        )

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Store each limit in place of its scope's, keeping its bucket; an empty one removes
        it (ADR 0038). One round trip; atomic; wakes waiters (a raised limit admits at once)."""
        for limit in limits:
            check_limit_values(limit)
        await self._write().submit(functools.partial(writes.set_limits, limits=list(limits)))
        self._woken()

    async def limits(self) -> list[Limit]:
        """The stored limits by (scope, name). One round trip to the reader."""
        return await self._read().run(reads.limits)

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace these workers by id. One round trip; atomic."""
        await self._write().submit(functools.partial(writes.record_workers, workers=list(workers)))

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove these workers. One round trip; atomic."""
        await self._write().submit(functools.partial(writes.forget_workers, ids=list(ids)))

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Workers last seen at or after `seen_since`, by id. One round trip to the reader."""
        return await self._read().run(functools.partial(reads.workers, seen_since=seen_since))

    async def record_instance(self, instance: str, data: bytes, now: float, ttl: float) -> None:
        """Replace the report and drop those expired before `now`. One round trip; atomic."""
        await self._write().submit(
            functools.partial(
                writes.record_instance, instance=instance, data=data, now=now, ttl=ttl
            )
        )

    async def instances(self, now: float) -> list[InstanceReport]:
        """The reports not expired at `now`, by instance. One round trip."""
        return await self._read().run(functools.partial(reads.instances, now=now))

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take `name` if free or expired, renew it if `holder` has it; True if held.

        One round trip, one atomic upsert: two processes never both hold `name`.
        """
        return await self._write().submit(
            functools.partial(writes.leader, name=name, holder=holder, ttl=ttl, now=now)
        )

    async def resign(self, name: str, holder: str) -> None:
        """Free `name` if `holder` holds it. One round trip."""
        await self._write().submit(functools.partial(writes.resign, name=name, holder=holder))
