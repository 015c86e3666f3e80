"""The in-memory broker: the reference semantics of the contract. Fast, not durable, one process.

`MemoryBroker` is the hot path over `MemoryAdmin` (admin.py) over `MemoryConnection`
(connection.py: the store and its indexes). Every operation runs on the event loop without an
await: no round trip, atomic.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from taskengine.brokers.base import EnqueueResult, check_lease_for, check_limit
from taskengine.brokers.batches import (
    check_parents_known,
    lock_keys,
    parents_to_find,
    split_new,
    split_unique,
)
from taskengine.brokers.memory import codec
from taskengine.brokers.memory.admin import MemoryAdmin
from taskengine.brokers.memory.queries import lowest
from taskengine.errors import QueueFull
from taskengine.model import Lease, LeaseStatus, Outcome, ProgressReport, Task, TaskState
from taskengine.model.priority import due_at
from taskengine.model.records import as_received, deleted_at_settle, expire, honour_cancel
from taskengine.model.unique import UniqueLock


class MemoryBroker(MemoryAdmin):
    """Every operation is synchronous under the hood and atomic (one event loop, no awaits)."""

    async def enqueue(
        self,
        tasks: Sequence[Task],
        now: float,
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        """Store tasks as queued (no round trip; atomic; QueueFull refuses the whole batch);
        a task whose unique lock is held answers the holder (ADR 0038)."""
        known_ids = {t.id for t in tasks if t.id in self._records}
        known_keys = {
            t.idempotency_key: self._by_key[t.idempotency_key]
            for t in tasks
            if t.idempotency_key is not None and t.idempotency_key in self._by_key
        }
        results, fresh = split_new(tasks, known_ids, known_keys)
        results, fresh, taken = split_unique(
            results, fresh, unique, tasks, self._held_locks(lock_keys(unique), now)
        )
        if self._queued + len(fresh) > self.max_depth:
            raise QueueFull(self._queued, self.max_depth, len(fresh))
        check_parents_known(fresh, (p for p in parents_to_find(fresh) if p in self._records))
        for task, lock in taken:
            self._locks[lock.key] = (task.id, lock.until(now), lock.states)
            self._lock_of[task.id] = lock.key
        for task in fresh:
            if task.idempotency_key is not None:
                self._by_key[task.idempotency_key] = task.id
            self._store_gated(codec.queued(as_received(task, now), now), now)
        if fresh:
            self._work.set()
        return results

    async def reserve(
        self,
        worker_id: str,
        limit: int,
        lease_for: float,
        now: float,
        queues: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` due tasks, lowest (order_key, id) first, across unpaused queues."""
        check_limit(limit)
        check_lease_for(lease_for)
        self._promote(now)
        wanted = set(queues) if queues is not None else None
        heaps = [
            heap
            for name, heap in self._ready.items()
            if name not in self._paused and (wanted is None or name in wanted)
        ]
        leases: list[Lease] = []
        expires_at = now + lease_for
        base = self._token_base()
        gate = self._gate(now) if self._limits else None
        held: list[tuple[list[tuple[float, str]], tuple[float, str]]] = []
        while len(leases) < limit:
            heap = lowest(heaps)
            if heap is None:
                break
            key, task_id = heapq.heappop(heap)
            record = self._is_entry(task_id, key)
            if record is None:
                continue
            due = due_at(record.run_at, record.created_at)
            if due > now:  # queued as due by a caller whose clock was ahead
                heapq.heappush(self._later, (due, task_id))
                continue
            if gate is not None and not gate.admit(record.type, record.queue):
                held.append((heap, (key, task_id)))  # stays queued: back once the loop ends
                continue
            token = f"{base}:{len(leases)}"
            record = codec.reserved(record, worker_id, now, expires_at)
            self._records[task_id] = record
            self._tokens[task_id] = token
            self._queued -= 1
            leases.append(Lease(record=record, token=token, expires_at=expires_at))
        for heap, entry in held:
            heapq.heappush(heap, entry)
        self._limited_for = None
        if gate is not None:
            gate.note_held_back()
            self._buckets.update(gate.buckets())
            self._limited_for = gate.retry_in
        return leases

    async def extend(
        self, leases: Sequence[Lease], lease_for: float, now: float
    ) -> list[LeaseStatus]:
        """Push held leases to `now + lease_for`; report lost ones and cancel requests."""
        check_lease_for(lease_for)
        statuses: list[LeaseStatus] = []
        for lease in leases:
            record = self._held(lease.task_id, lease.token)
            if record is None:
                statuses.append(LeaseStatus.LOST)
                continue
            self._records[record.id] = codec.extended(record, now + lease_for)
            statuses.append(
                LeaseStatus.CANCEL_REQUESTED if record.cancel_requested else LeaseStatus.HELD
            )
        return statuses

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply each outcome whose token is current; refuse (False) the others. A retry,
        snooze or release of a task with a cancel request cancels it (model.records)."""
        applied: list[bool] = []
        ended: list[tuple[str, TaskState]] = []  # released together: model.deps.blame
        forgotten: list[str] = []
        for outcome in outcomes:
            record = self._held(outcome.task_id, outcome.token)
            if record is None:
                applied.append(False)
                continue
            if record.cancel_requested:
                outcome = honour_cancel(outcome, now) or outcome
            record = codec.settled(record, outcome, now)
            del self._tokens[record.id]
            if self._limits and self._limits_concurrency(record):
                self._work.set()  # a slot is free: a fetcher waiting on the limit may reserve
            if deleted_at_settle(record.state, record.keep_result):
                self._records[record.id] = record
                ended.append((record.id, record.state))
                forgotten.append(record.id)  # after its dependents are released
            elif record.state is TaskState.QUEUED:
                self._store_queued(record, now)
                if due_at(record.run_at, record.created_at) <= now:
                    self._work.set()
            else:
                self._records[record.id] = record
                ended.append((record.id, record.state))
            applied.append(True)
        self._release(ended, now)
        for task_id in forgotten:
            self._forget(task_id)
        return applied

    async def record_progress(self, reports: Sequence[ProgressReport], now: float) -> list[bool]:
        """Store each report's progress on its running task if its token is current."""
        applied: list[bool] = []
        for report in reports:
            record = self._held(report.task_id, report.token)
            if record is not None:
                self._records[record.id] = codec.progressed(record, report.progress)
            applied.append(record is not None)
        return applied

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Requeue running tasks whose lease ran out before `now` (cancel them if asked; on
        their last attempt they are dead: model.records.expire). Looks only at the leased
        tasks (`_tokens`), not at every record kept."""
        check_limit(limit)
        running = (self._records[task_id] for task_id in self._tokens)  # leased: running
        expired = sorted(
            (r.lease_expires_at or 0.0, r.id) for r in running if (r.lease_expires_at or 0.0) < now
        )[:limit]
        ended: list[tuple[str, TaskState]] = []
        for _, task_id in expired:
            record = self._records[task_id]
            expiry = expire(
                task_id,
                attempt=record.attempt,
                max_attempts=record.max_attempts,
                cancel_requested=record.cancel_requested,
                worker_id=record.worker_id,
                started_at=record.started_at,
                now=now,
            )
            record = codec.expired(record, expiry, now)
            del self._tokens[task_id]
            if record.state is TaskState.QUEUED:
                self._store_queued(record, now)
            else:
                self._records[task_id] = record
                ended.append((task_id, record.state))
        self._release(ended, now)
        if expired:
            self._work.set()
        return [task_id for _, task_id in expired]


__all__ = ["MemoryBroker"]
