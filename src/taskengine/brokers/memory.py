"""The in-memory broker: the reference semantics of the contract. Fast, not durable, one process."""

from __future__ import annotations

import asyncio
import heapq
import secrets
from collections.abc import Iterable, Sequence

from msgspec.structs import replace

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
from taskengine.brokers.semantics import LEASE_EXPIRED, as_received, expiry_result, honour_cancel
from taskengine.errors import QueueFull
from taskengine.model import (
    AttemptRecord,
    Lease,
    LeaseStatus,
    Outcome,
    Priority,
    ResultStatus,
    Task,
    TaskRecord,
    TaskResult,
    TaskState,
)
from taskengine.model.outcome import ATTEMPT_REFUNDED, NEEDS_RESULT
from taskengine.model.priority import due_at, order_key
from taskengine.model.state import REPLAYABLE_STATES, TERMINAL_STATES
from taskengine.model.task import queued_record
from taskengine.model.worker import WorkerInfo

_CAPABILITIES = Capabilities(durable=False, shared=False, push_wakeup=True)


class MemoryBroker:
    """Every operation is synchronous under the hood and atomic (one event loop, no awaits)."""

    def __init__(self, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        check_limit(max_depth, "max_depth")
        self.max_depth = max_depth
        self._records: dict[str, TaskRecord] = {}
        self._tokens: dict[str, str] = {}
        self._by_key: dict[str, str] = {}
        # Queued tasks: `_ready` per queue ordered by (order_key, id) once due (at once
        # when queued due), `_later` by due time (model.priority.due_at) until then.
        # Entries are checked against the record when popped (lazy deletion).
        self._ready: dict[str, list[tuple[float, str]]] = {}
        self._later: list[tuple[float, str]] = []
        self._queued = 0
        self._paused: set[str] = set()
        self._workers: dict[str, WorkerInfo] = {}
        self._leaders: dict[str, tuple[str, float]] = {}
        self._work = asyncio.Event()

    @property
    def capabilities(self) -> Capabilities:
        """Not durable, not shared across processes; wakes waiters on enqueue."""
        return _CAPABILITIES

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to flush."""

    # -- hot path ---------------------------------------------------------------------------

    async def enqueue(self, tasks: Sequence[Task], now: float) -> list[EnqueueResult]:
        """Store tasks as queued (no round trip; atomic; QueueFull refuses the whole batch)."""
        results: list[EnqueueResult] = []
        fresh: list[Task] = []
        seen_ids: set[str] = set()
        batch_keys: dict[str, str] = {}
        for task in tasks:
            existing = self._existing(task, seen_ids, batch_keys)
            if existing is not None:
                results.append(EnqueueResult(existing, False))
                continue
            seen_ids.add(task.id)
            if task.idempotency_key is not None:
                batch_keys[task.idempotency_key] = task.id
            fresh.append(task)
            results.append(EnqueueResult(task.id, True))
        if self._queued + len(fresh) > self.max_depth:
            raise QueueFull(self._queued, self.max_depth, len(fresh))
        for task in fresh:
            record = queued_record(as_received(task, now), now)
            self._records[task.id] = record
            if task.idempotency_key is not None:
                self._by_key[task.idempotency_key] = task.id
            self._push(record, now)
        self._queued += len(fresh)
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
        base = secrets.token_hex(8)  # one draw per call: a token is unique, not secret
        while len(leases) < limit:
            heap = _lowest(heaps)
            if heap is None:
                break
            key, task_id = heapq.heappop(heap)
            record = self._records.get(task_id)
            if record is None or not self._is_entry(record, key):
                continue
            due = due_at(record.run_at, record.created_at)
            if due > now:  # queued as due by a caller whose clock was ahead
                heapq.heappush(self._later, (due, task_id))
                continue
            token = f"{base}:{len(leases)}"
            record = replace(
                record,
                state=TaskState.RUNNING,
                attempt=record.attempt + 1,
                updated_at=now,
                started_at=now,
                worker_id=worker_id,
                lease_expires_at=expires_at,
                cancel_requested=False,
            )
            self._records[task_id] = record
            self._tokens[task_id] = token
            self._queued -= 1
            leases.append(Lease(record=record, token=token, expires_at=expires_at))
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
            self._records[record.id] = replace(record, lease_expires_at=now + lease_for)
            statuses.append(
                LeaseStatus.CANCEL_REQUESTED if record.cancel_requested else LeaseStatus.HELD
            )
        return statuses

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply each outcome whose token is current; refuse (False) the others. A retry,
        snooze or release of a task with a cancel request cancels it (brokers.semantics)."""
        applied: list[bool] = []
        for outcome in outcomes:
            record = self._held(outcome.task_id, outcome.token)
            if record is None:
                applied.append(False)
                continue
            if record.cancel_requested:
                outcome = honour_cancel(outcome, now) or outcome
            self._records[record.id] = _settled(record, outcome, now)
            del self._tokens[record.id]
            if outcome.state is TaskState.QUEUED:
                self._queued += 1
                requeued = self._records[record.id]
                self._push(requeued, now)
                if due_at(requeued.run_at, requeued.created_at) <= now:
                    self._work.set()
            applied.append(True)
        return applied

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Requeue running tasks whose lease ran out before `now` (cancel them if asked; on
        their last attempt they are dead)."""
        check_limit(limit)
        expired = sorted(
            (r.lease_expires_at or 0.0, r.id)
            for r in self._records.values()
            if r.state is TaskState.RUNNING and (r.lease_expires_at or 0.0) < now
        )[:limit]
        ids: list[str] = []
        for _, task_id in expired:
            record = self._records[task_id]
            cancel = record.cancel_requested
            line = AttemptRecord(
                attempt=record.attempt,
                status=ResultStatus.CANCELLED if cancel else ResultStatus.FAILURE,
                worker_id=record.worker_id,
                finished_at=now,
                duration=now - (record.started_at or now),
                error=LEASE_EXPIRED,
            )
            spent = record.attempt >= record.max_attempts
            record = _left_running(record, now, history_line=line)
            if cancel:
                record = replace(record, state=TaskState.CANCELLED, finished_at=now)
            elif spent:
                result = expiry_result(
                    task_id,
                    attempt=record.attempt,
                    max_attempts=record.max_attempts,
                    worker_id=line.worker_id,
                    now=now,
                    duration=line.duration,
                )
                record = replace(record, state=TaskState.DEAD, finished_at=now, result=result)
            else:
                record = replace(record, state=TaskState.QUEUED, run_at=now)
                self._queued += 1
                self._push(record, now)
            self._records[task_id] = record
            del self._tokens[task_id]
            ids.append(task_id)
        if ids:
            self._work.set()
        return ids

    async def wait_for_work(self, timeout: float) -> None:
        """Return as soon as something is enqueued or requeued, or after `timeout`."""
        if not self._work.is_set():
            try:
                await asyncio.wait_for(self._work.wait(), timeout)
            except TimeoutError:
                return
        self._work.clear()

    # -- admin ------------------------------------------------------------------------------

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Return each record, or None where unknown."""
        return [self._records.get(task_id) for task_id in ids]

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Return matching tasks newest first by id, after `cursor` (O(n) scan)."""
        check_limit(limit)
        matching = sorted(
            (r for r in self._records.values() if _matches(r, filter, cursor)),
            key=lambda r: r.id,
            reverse=True,
        )
        items = matching[:limit]
        more = len(matching) > limit
        return Page(items, items[-1].id if more else None)

    async def counts(self) -> list[CountRow]:
        """Count tasks per (queue, state, priority), with the oldest queued one's creation time."""
        groups: dict[tuple[str, TaskState, int], tuple[int, float]] = {}
        for r in self._records.values():
            key = (r.queue, r.state, r.priority)
            count, oldest = groups.get(key, (0, r.created_at))
            groups[key] = (count + 1, min(oldest, r.created_at))
        return [
            CountRow(
                queue,
                state,
                Priority(priority),
                count,
                oldest if state is TaskState.QUEUED else None,
            )
            for (queue, state, priority), (count, oldest) in sorted(groups.items())
        ]

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued tasks now; flag running ones for their worker's next extend."""
        results: list[CancelResult] = []
        for task_id in ids:
            record = self._records.get(task_id)
            if record is None:
                results.append(CancelResult.NOT_FOUND)
            elif record.state is TaskState.QUEUED:
                self._records[task_id] = cancelled_record(record, now)
                self._queued -= 1
                results.append(CancelResult.CANCELLED)
            elif record.state is TaskState.RUNNING:
                self._records[task_id] = replace(record, cancel_requested=True, updated_at=now)
                results.append(CancelResult.REQUESTED)
            else:
                results.append(CancelResult.FINISHED)
        return results

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued, due now, attempt count reset."""
        results: list[ReplayResult] = []
        for task_id in ids:
            record = self._records.get(task_id)
            if record is None:
                results.append(ReplayResult.NOT_FOUND)
            elif record.state not in REPLAYABLE_STATES:
                results.append(ReplayResult.NOT_REPLAYABLE)
            else:
                record = replayed_record(record, now)
                self._records[task_id] = record
                self._queued += 1
                self._push(record, now)
                results.append(ReplayResult.REPLAYED)
        if ReplayResult.REPLAYED in results:
            self._work.set()
        return results

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` terminal tasks in `states` finished before the cutoff."""
        check_limit(limit)
        wanted = set(states) & TERMINAL_STATES
        doomed = sorted(
            (r.finished_at or 0.0, r.id)
            for r in self._records.values()
            if r.state in wanted and (r.finished_at or 0.0) < finished_before
        )[:limit]
        for _, task_id in doomed:
            record = self._records.pop(task_id)
            if record.idempotency_key is not None:
                self._by_key.pop(record.idempotency_key, None)
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

    # -- internals --------------------------------------------------------------------------

    def _existing(self, task: Task, seen_ids: set[str], batch_keys: dict[str, str]) -> str | None:
        if task.id in self._records or task.id in seen_ids:
            return task.id
        key = task.idempotency_key
        if key is None:
            return None
        return self._by_key.get(key) or batch_keys.get(key)

    def _held(self, task_id: str, token: str) -> TaskRecord | None:
        record = self._records.get(task_id)
        if record is None or record.state is not TaskState.RUNNING:
            return None
        return record if self._tokens.get(task_id) == token else None

    def _push(self, record: TaskRecord, now: float) -> None:
        """Index a queued record: in its queue's ready heap if due, else in `_later`."""
        due = due_at(record.run_at, record.created_at)
        if due <= now:
            self._make_ready(record, due)
        else:
            heapq.heappush(self._later, (due, record.id))

    def _make_ready(self, record: TaskRecord, due: float) -> None:
        heap = self._ready.get(record.queue)
        if heap is None:  # not setdefault: no throwaway list per call on the hot path
            heap = self._ready[record.queue] = []
        heapq.heappush(heap, (order_key(record.priority, due), record.id))

    def _promote(self, now: float) -> None:
        """Move entries now due from `_later` to their queue's ready heap."""
        later = self._later
        while later and later[0][0] <= now:
            due, task_id = heapq.heappop(later)
            record = self._records.get(task_id)
            if (
                record is None
                or record.state is not TaskState.QUEUED
                or due_at(record.run_at, record.created_at) != due
            ):
                continue
            self._make_ready(record, due)

    @staticmethod
    def _is_entry(record: TaskRecord, key: float) -> bool:
        due = due_at(record.run_at, record.created_at)
        return record.state is TaskState.QUEUED and order_key(record.priority, due) == key


def _lowest(heaps: Iterable[list[tuple[float, str]]]) -> list[tuple[float, str]] | None:
    best: list[tuple[float, str]] | None = None
    for heap in heaps:
        if heap and (best is None or heap[0] < best[0]):
            best = heap
    return best


def _matches(record: TaskRecord, f: TaskFilter, cursor: str | None) -> bool:
    return (
        (cursor is None or record.id < cursor)
        and (f.states is None or record.state in f.states)
        and (f.types is None or record.type in f.types)
        and (f.queues is None or record.queue in f.queues)
        and (f.priorities is None or record.priority in f.priorities)
        and (f.created_after is None or record.created_at >= f.created_after)
        and (f.created_before is None or record.created_at < f.created_before)
    )


def _left_running(
    record: TaskRecord, now: float, *, history_line: AttemptRecord | None
) -> TaskRecord:
    """The record with its lease cleared (and one history line added)."""
    history = [*record.history, history_line] if history_line else record.history
    return replace(
        record,
        updated_at=now,
        lease_expires_at=None,
        cancel_requested=False,
        history=history,
    )


def _settled(record: TaskRecord, outcome: Outcome, now: float) -> TaskRecord:
    """The record after `outcome` (already checked against the current token)."""
    result = outcome.result
    line = None
    if outcome.kind in NEEDS_RESULT and result is not None:
        line = AttemptRecord(
            attempt=record.attempt,
            status=result.status,
            worker_id=result.worker_id,
            finished_at=result.completed_at,
            duration=result.duration,
            error=result.error,
        )
    settled = _left_running(record, now, history_line=line)
    state = outcome.state
    changes: dict[str, object] = {"state": state}
    if result is not None:
        changes["result"] = replace(result, attempt=record.attempt)
    if outcome.kind in ATTEMPT_REFUNDED:
        changes["attempt"] = record.attempt - 1
    if outcome.run_at is not None:
        changes["run_at"] = outcome.run_at
    if state in TERMINAL_STATES:
        changes["finished_at"] = now
    return replace(settled, **changes)


def cancelled_record(record: TaskRecord, now: float) -> TaskRecord:
    """A queued record cancelled before it ran; its result says CANCELLED."""
    result = TaskResult(
        task_id=record.id,
        status=ResultStatus.CANCELLED,
        completed_at=now,
        error="cancelled before it ran",
        attempt=record.attempt,
    )
    return replace(
        record, state=TaskState.CANCELLED, updated_at=now, finished_at=now, result=result
    )


def replayed_record(record: TaskRecord, now: float) -> TaskRecord:
    """A dead or cancelled record queued again, due now, with a fresh attempt count."""
    return replace(
        record,
        state=TaskState.QUEUED,
        attempt=0,
        run_at=now,
        updated_at=now,
        finished_at=None,
        worker_id=None,
        cancel_requested=False,
    )


__all__ = ["MemoryBroker"]
