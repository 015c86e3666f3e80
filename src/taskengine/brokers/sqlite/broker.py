"""The SQLite broker: durable and shared by processes on one file; the default broker.

`SqliteBroker` is the hot path over `SqliteAdmin` (admin.py) over `SqliteConnection`
(connection.py): every operation is a function of writes.py run by the writer thread, in the
writer's group-commit transaction (see connection.py for what a round trip is).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from taskengine.brokers.base import (
    EnqueueResult,
    check_lease_for,
    check_limit,
)
from taskengine.brokers.sqlite import writes
from taskengine.brokers.sqlite.admin import SqliteAdmin
from taskengine.model import Lease, LeaseStatus, Outcome, ProgressReport, Task, TaskState
from taskengine.model.unique import UniqueLock


class SqliteBroker(SqliteAdmin):
    """A broker on one SQLite file (WAL), safe for many processes sharing the file."""

    async def enqueue(
        self,
        tasks: Sequence[Task],
        now: float,
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        """Store tasks as queued, one result per task in input order (unique locks: ADR 0038).

        One round trip (three statements); atomic: the whole batch is stored or, on QueueFull
        (or any error), nothing is. Duplicates by id, then idempotency key, stored or earlier
        in the batch, return the first task's id with created=False.
        """
        writer = self._write()
        if not tasks:
            return []
        results = await writer.submit(
            functools.partial(
                writes.enqueue,
                tasks=list(tasks),
                now=now,
                max_depth=self.max_depth,
                unique=None if unique is None else list(unique),
            )
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
        leases, version, self._limited_for, self._has_limits = await writer.submit(
            functools.partial(
                writes.reserve,
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
            functools.partial(writes.extend, leases=list(leases), lease_for=lease_for, now=now)
        )

    async def record_progress(self, reports: Sequence[ProgressReport], now: float) -> list[bool]:
        """Store each report's progress if its token is current (aligned bools).

        One round trip (one select, one executemany); atomic. A refused report changes nothing.
        """
        writer = self._write()
        if not reports:
            return []
        return await writer.submit(functools.partial(writes.record_progress, reports=list(reports)))

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply a mixed batch of outcomes, each only if its token is current (aligned bools).

        One round trip; atomic. A batch of finishing outcomes (succeeded, dead, cancelled)
        whose results name their attempt is one fenced UPDATE per task and no read; any other
        batch (or one where a lease was lost) reads the running rows first. A refused outcome
        (False) changes nothing; a second outcome for the same lease in the batch is refused.
        History lines go to the insert-only attempts table.
        """
        writer = self._write()
        if not outcomes:
            return []
        applied, released = await writer.submit(
            functools.partial(writes.settle, outcomes=list(outcomes), now=now)
        )
        if (
            released
            or (self._has_limits and any(applied))
            or any(
                ok and o.state is TaskState.QUEUED and (o.run_at is None or o.run_at <= now)
                for ok, o in zip(applied, outcomes, strict=True)
            )
        ):
            self._woken()
        return applied

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Requeue (or cancel, if asked) up to `limit` running tasks whose lease expired before
        `now`, oldest expiry first, recording the lost attempt. One round trip; atomic."""
        check_limit(limit)
        writer = self._write()
        ids = await writer.submit(functools.partial(writes.requeue_expired, now=now, limit=limit))
        if ids:
            self._woken()
        return ids
