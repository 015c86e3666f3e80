"""The in-memory broker's store: its dicts and heaps, the wake-up event, and their indexing.

There is no connection to open: the "store" is this process's memory and every operation runs
on the event loop without an await, so each is atomic. Queued tasks are indexed in `_ready`
per queue, ordered by (order_key, id) once due (at once when queued due), and in `_later` by
due time (model.priority.due_at) until then. Entries are checked against the record when
popped (lazy deletion), so a record that changed leaves a stale entry that is skipped.
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
from collections.abc import Iterable, Sequence

from msgspec.structs import replace

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    Capabilities,
    Control,
    InstanceReport,
    check_limit,
)
from taskengine.brokers.limits import Gate, ScopeKey
from taskengine.brokers.memory import codec
from taskengine.brokers.memory.queries import Heap
from taskengine.brokers.waiting import wait_event
from taskengine.model import TaskRecord, TaskState
from taskengine.model.deps import blame, gate, releases
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.priority import due_at, order_key
from taskengine.model.unique import lock_holds
from taskengine.model.worker import WorkerInfo

_CAPABILITIES = Capabilities(durable=False, shared=False, push_wakeup=True)


class MemoryConnection:
    """The records, lease tokens and indexes of one in-process store."""

    def __init__(self, *, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        check_limit(max_depth, "max_depth")
        self.max_depth = max_depth
        self._records: dict[str, TaskRecord] = {}
        self._tokens: dict[str, str] = {}
        self._by_key: dict[str, str] = {}
        self._ready: dict[str, Heap] = {}
        self._later: Heap = []
        self._queued = 0
        self._paused: set[str] = set()
        self._waits: dict[str, set[str]] = {}  # parent -> its blocked dependents (model.deps)
        self._workers: dict[str, WorkerInfo] = {}
        self._controls: dict[str, list[Control]] = {}
        self._leaders: dict[str, tuple[str, float]] = {}
        self._instances: dict[str, InstanceReport] = {}
        self._work = asyncio.Event()
        self._limits: dict[ScopeKey, Limit] = {}
        self._buckets: dict[ScopeKey, tuple[float, float]] = {}
        self._limited_for: float | None = None
        # unique lock key -> (holder id, until, states) (ADR 0038)
        self._locks: dict[str, tuple[str, float | None, tuple[TaskState, ...]]] = {}
        self._lock_of: dict[str, str] = {}  # holder id -> its lock key, freed with the record

    @property
    def capabilities(self) -> Capabilities:
        """Not durable, not shared across processes; wakes waiters on enqueue."""
        return _CAPABILITIES

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to flush."""

    def _forget(self, task_id: str) -> None:
        """Delete a finished task's record and free its idempotency key and unique lock."""
        self._waits.pop(task_id, None)
        record = self._records.pop(task_id, None)
        key = None if record is None else record.idempotency_key
        if key is not None and self._by_key.get(key) == task_id:
            del self._by_key[key]
        lock = self._lock_of.pop(task_id, None)
        if lock is not None and self._locks.get(lock, ("",))[0] == task_id:
            del self._locks[lock]

    async def wait_for_work(self, timeout: float) -> None:
        """Return as soon as something is enqueued or requeued, or after `timeout`."""
        if await wait_event(self._work, timeout):
            self._work.clear()

    @property
    def limited_for(self) -> float | None:
        """Seconds until an empty bucket seen by the last reserve gets a token (ADR 0038)."""
        return self._limited_for

    # -- storage ----------------------------------------------------------------------------

    def _token_base(self) -> str:
        """The prefix of the tokens one `reserve` call hands out: unique, not secret."""
        return secrets.token_hex(8)  # one draw per call; NATS replicas draw it from the log

    def _held(self, task_id: str, token: str) -> TaskRecord | None:
        """The running record `token` leases, or None if the lease is not current."""
        record = self._records.get(task_id)
        if record is None or record.state is not TaskState.RUNNING:
            return None
        return record if self._tokens.get(task_id) == token else None

    def _store_queued(self, record: TaskRecord, now: float) -> None:
        """Store a record that became queued, count it and index it."""
        self._records[record.id] = record
        self._queued += 1
        self._push(record, now)

    def _store_gated(self, record: TaskRecord, now: float) -> TaskRecord:
        """Store a new or replayed record as its parents' states say (model.deps.gate):
        queued, blocked (with an edge from each unsettled parent) or cancelled at once."""
        if not record.depends_on:
            self._store_queued(record, now)
            return record
        states = [self._state_of(parent) for parent in record.depends_on]
        decided = gate(record.depends_on, states, record.on_parent_failure)
        if decided.state is TaskState.QUEUED:
            record = replace(record, state=TaskState.QUEUED, waiting=0)
            self._store_queued(record, now)
        elif decided.state is TaskState.BLOCKED:
            record = replace(record, state=TaskState.BLOCKED, waiting=len(decided.waiting))
            self._records[record.id] = record
            for parent in decided.waiting:
                self._waits.setdefault(parent, set()).add(record.id)
        else:
            assert decided.failed is not None
            record = codec.parent_failed(record, *decided.failed, now)
            self._records[record.id] = record
        return record

    def _state_of(self, task_id: str) -> TaskState | None:
        record = self._records.get(task_id)
        return None if record is None else record.state

    def _release(self, ended: Sequence[tuple[str, TaskState]], now: float) -> None:
        """Tasks ended in terminal states in one call: take them off their dependents' waiting
        counts (queueing those at zero), or cancel the dependents a failure cancels, naming
        the parent model.deps.blame picks, and theirs, a level of the graph per round."""
        pending = [(parent, state) for parent, state in ended if parent in self._waits]
        while pending:
            counts: dict[str, int] = {}
            failed: dict[str, list[tuple[str, TaskState]]] = {}
            for parent, parent_state in pending:
                for child_id in self._waits.pop(parent, ()):
                    child = self._records.get(child_id)
                    if child is None or child.state is not TaskState.BLOCKED:
                        continue
                    if releases(parent_state, child.on_parent_failure):
                        counts[child_id] = counts.get(child_id, 0) + 1
                    else:
                        failed.setdefault(child_id, []).append((parent, parent_state))
            pending = []
            for child_id in sorted(failed):
                child = self._records[child_id]
                self._records[child_id] = codec.parent_failed(child, *blame(failed[child_id]), now)
                pending.append((child_id, TaskState.CANCELLED))
            for child_id in sorted(counts.keys() - failed.keys()):
                child = self._records[child_id]
                child = replace(child, waiting=child.waiting - counts[child_id], updated_at=now)
                if child.waiting <= 0:
                    self._store_queued(replace(child, state=TaskState.QUEUED), now)
                    self._work.set()
                else:
                    self._records[child_id] = child

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

    def _gate(self, now: float) -> Gate:
        """The limits' view for one reserve: running counts of the limited scopes, buckets."""
        running: dict[ScopeKey, int] = {}
        if any(limit.max_concurrency is not None for limit in self._limits.values()):
            for task_id in self._tokens:
                record = self._records[task_id]
                for key in ((LimitScope.TYPE, record.type), (LimitScope.QUEUE, record.queue)):
                    if key in self._limits:
                        running[key] = running.get(key, 0) + 1
        return Gate(self._limits.values(), running, self._buckets, now)

    def _held_locks(self, keys: Iterable[str], now: float) -> dict[str, str]:
        """Unique lock key -> holder id of those of `keys` whose stored lock still holds."""
        held: dict[str, str] = {}
        for key in keys:
            if key not in self._locks:
                continue
            holder, until, states = self._locks[key]
            record = self._records.get(holder)
            if lock_holds(until, states, None if record is None else record.state, now):
                held[key] = holder
        return held

    def _limits_concurrency(self, record: TaskRecord) -> bool:
        """True when the record's type or queue has a max_concurrency (its settle wakes)."""
        for key in ((LimitScope.TYPE, record.type), (LimitScope.QUEUE, record.queue)):
            limit = self._limits.get(key)
            if limit is not None and limit.max_concurrency is not None:
                return True
        return False

    def _is_entry(self, task_id: str, key: float) -> TaskRecord | None:
        """The queued record a ready-heap entry still stands for, or None if it is stale."""
        record = self._records.get(task_id)
        if record is None or record.state is not TaskState.QUEUED:
            return None
        due = due_at(record.run_at, record.created_at)
        return record if order_key(record.priority, due) == key else None


__all__ = ["MemoryConnection"]
