"""The admin half of the in-memory broker: inspection, cancel/replay/purge, pause, registry,
leader. Each method runs without an await: atomic, no round trip."""

from __future__ import annotations

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
from taskengine.brokers.memory import codec
from taskengine.brokers.memory.connection import MemoryConnection
from taskengine.brokers.memory.queries import count_rows, matches
from taskengine.model import TaskRecord, TaskState
from taskengine.model.deps import gate
from taskengine.model.limits import Limit, check_limit_values
from taskengine.model.records import kept_until
from taskengine.model.state import REPLAYABLE_STATES, TERMINAL_STATES
from taskengine.model.worker import WorkerInfo


class MemoryAdmin(MemoryConnection):
    """Inspection and control; see BrokerAdmin in brokers/base.py for the contract."""

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Return each record, or None where unknown."""
        records = [self._records.get(task_id) for task_id in ids]
        return [None if record is None else codec.shown(record) for record in records]

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Return matching tasks newest first by id, after `cursor` (O(n) scan)."""
        check_limit(limit)
        matching = sorted(
            (r for r in self._records.values() if matches(r, filter, cursor)),
            key=lambda r: r.id,
            reverse=True,
        )
        items = [codec.shown(record) for record in matching[:limit]]
        more = len(matching) > limit
        return Page(items, items[-1].id if more else None)

    async def counts(self) -> list[CountRow]:
        """Count tasks per (queue, state, priority), with the oldest queued one's creation time."""
        return count_rows(self._records.values())

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued and blocked tasks now, then what depends on them (model.deps); flag
        running ones for their worker's next extend."""
        results: list[CancelResult] = []
        ended: list[str] = []
        for task_id in ids:
            record = self._records.get(task_id)
            if record is None:
                results.append(CancelResult.NOT_FOUND)
            elif record.state in (TaskState.QUEUED, TaskState.BLOCKED):
                self._records[task_id] = codec.cancelled(record, now)
                if record.state is TaskState.QUEUED:
                    self._queued -= 1
                ended.append(task_id)
                results.append(CancelResult.CANCELLED)
            elif record.state is TaskState.RUNNING:
                self._records[task_id] = codec.cancel_requested(record, now)
                results.append(CancelResult.REQUESTED)
            else:
                results.append(CancelResult.FINISHED)
        # the ids named are cancelled as asked; then their dependents
        self._release([(task_id, TaskState.CANCELLED) for task_id in ended], now)
        return results

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued, due now, attempt count reset."""
        results: list[ReplayResult] = []
        for task_id in ids:
            record = self._records.get(task_id)
            if record is None:
                results.append(ReplayResult.NOT_FOUND)
            elif record.state not in REPLAYABLE_STATES or self._parent_failed(record):
                results.append(ReplayResult.NOT_REPLAYABLE)
            else:
                self._store_gated(codec.replayed(record, now), now)
                results.append(ReplayResult.REPLAYED)
        if ReplayResult.REPLAYED in results:
            self._work.set()
        return results

    def _parent_failed(self, record: TaskRecord) -> bool:
        """Whether a parent of `record` ended so that a replay would cancel it again."""
        if not record.depends_on:
            return False
        states = [self._state_of(parent) for parent in record.depends_on]
        return gate(record.depends_on, states, record.on_parent_failure).failed is not None

    async def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete finished tasks by id."""
        results: list[bool] = []
        for task_id in ids:
            record = self._records.get(task_id)
            finished = record is not None and record.state in TERMINAL_STATES
            if finished:
                self._forget(task_id)
            results.append(finished)
        return results

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` terminal tasks in `states` finished before the cutoff."""
        check_limit(limit)
        wanted = set(states) & TERMINAL_STATES
        doomed = sorted(
            (r.finished_at or 0.0, r.id)
            for r in self._records.values()
            if r.state in wanted
            and (r.finished_at or 0.0) < finished_before
            and kept_until(r.state, r.finished_at, r.keep_result) is None
        )[:limit]
        for _, task_id in doomed:
            self._forget(task_id)
        return len(doomed)

    async def purge_kept(self, now: float, limit: int) -> int:
        """Delete up to `limit` succeeded tasks whose own retention ran out before `now`."""
        check_limit(limit)
        expiries = (
            (kept_until(r.state, r.finished_at, r.keep_result), r.id)
            for r in self._records.values()
        )
        doomed = sorted((at, i) for at, i in expiries if at is not None and at < now)[:limit]
        for _, task_id in doomed:
            self._forget(task_id)
        return len(doomed)

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop reserving from these queues."""
        self._paused.update(queues)

    async def resume(self, queues: Sequence[str]) -> None:
        """Reserve from these queues again."""
        self._paused.difference_update(queues)
        self._work.set()

    async def paused(self) -> set[str]:
        """Return the paused queues."""
        return set(self._paused)

    async def send_control(self, instance: str, controls: Sequence[Control]) -> None:
        """Append commands to the instance's channel."""
        if controls:
            self._controls.setdefault(instance, []).extend(controls)

    def has_controls(self, instance: str) -> bool:
        """Whether commands wait for the instance (the NATS replica's cheap look first)."""
        return bool(self._controls.get(instance))

    async def take_controls(self, instance: str) -> list[Control]:
        """Remove and return the instance's waiting commands, oldest first."""
        return self._controls.pop(instance, [])

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Store each limit in place of its scope's; an empty one removes it (ADR 0038)."""
        for limit in limits:
            check_limit_values(limit)
        for limit in limits:
            key = (limit.scope, limit.name)
            if limit.empty:
                self._limits.pop(key, None)
                self._buckets.pop(key, None)
            else:
                self._limits[key] = limit
        self._work.set()  # a raised limit may admit tasks at once

    async def limits(self) -> list[Limit]:
        """Return the stored limits by (scope, name)."""
        return [self._limits[key] for key in sorted(self._limits)]

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace workers by id."""
        for worker in workers:
            self._workers[worker.id] = worker

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove workers by id."""
        for worker_id in ids:
            self._workers.pop(worker_id, None)

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Return workers seen at or after `seen_since`, by id."""
        return sorted(
            (w for w in self._workers.values() if w.last_seen >= seen_since), key=lambda w: w.id
        )

    async def record_instance(self, instance: str, data: bytes, now: float, ttl: float) -> None:
        """Insert or replace the report; drop those expired before `now`."""
        reports = self._instances
        for name in [name for name, r in reports.items() if r.expires_at < now]:
            del reports[name]
        reports[instance] = InstanceReport(instance, now + ttl, data)

    async def instances(self, now: float) -> list[InstanceReport]:
        """Return the reports not expired at `now`, by instance."""
        return sorted(
            (r for r in self._instances.values() if r.expires_at >= now), key=lambda r: r.instance
        )

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take `name` if free or expired, renew it if `holder` has it."""
        current = self._leaders.get(name)
        if current is None or current[0] == holder or current[1] <= now:
            self._leaders[name] = (holder, now + ttl)
            return True
        return False

    async def resign(self, name: str, holder: str) -> None:
        """Free `name` if `holder` has it."""
        current = self._leaders.get(name)
        if current is not None and current[0] == holder:
            del self._leaders[name]
