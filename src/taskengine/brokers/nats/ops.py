"""The operations written to the log, one struct each, and how a replica applies them.

These are the NATS broker's "statements" (ADR 0031). An operation carries every input its
effect depends on, the caller's `now`, its `max_depth` and the token prefix of a `reserve`
included, so every replica that applies the log in order reaches the same state and the
same answer. Inputs: the struct. Output: what the matching contract method returns (or the
exception it raises, returned as a value). Invariant: applying is synchronous and
deterministic; the replica is the memory reference (brokers/memory), unchanged.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, NamedTuple, TypeVar, cast

import msgspec
from msgspec.structs import replace

from taskengine.brokers.base import Control
from taskengine.brokers.memory import MemoryBroker
from taskengine.errors import TaskEngineError
from taskengine.model import Lease, Outcome, ProgressReport, Task, TaskState
from taskengine.model.limits import Limit
from taskengine.model.unique import UniqueLock
from taskengine.model.worker import WorkerInfo

T = TypeVar("T")


class Enqueue(msgspec.Struct, frozen=True, tag="enqueue"):
    """`enqueue(tasks, now, unique)`, refused past the caller's `max_depth`; `unique` aligned
    with `tasks` (ADR 0038; None in operations written before it)."""

    tasks: list[Task]
    now: float
    max_depth: int
    unique: list[UniqueLock | None] | None = None


class Reserve(msgspec.Struct, frozen=True, tag="reserve"):
    """`reserve(...)`; tokens are `<base>:<n>`, the base drawn by the caller."""

    worker_id: str
    limit: int
    lease_for: float
    now: float
    queues: list[str] | None
    base: str


class Reserved(NamedTuple):
    """What a `Reserve` answers: the leases, and the replica's `limited_for` right after."""

    leases: list[Lease]
    limited_for: float | None


class SetLimits(msgspec.Struct, frozen=True, tag="limits"):
    """`set_limits(limits)` (ADR 0038)."""

    limits: list[Limit]


class Extend(msgspec.Struct, frozen=True, tag="extend"):
    """`extend(leases, lease_for, now)`; a lease travels as (task id, token)."""

    held: list[tuple[str, str]]
    lease_for: float
    now: float


class Settle(msgspec.Struct, frozen=True, tag="settle"):
    """`settle(outcomes, now)`."""

    outcomes: list[Outcome]
    now: float


class RequeueExpired(msgspec.Struct, frozen=True, tag="requeue"):
    """`requeue_expired(now, limit)`."""

    now: float
    limit: int


class Cancel(msgspec.Struct, frozen=True, tag="cancel"):
    """`cancel(ids, now)`."""

    ids: list[str]
    now: float


class Replay(msgspec.Struct, frozen=True, tag="replay"):
    """`replay(ids, now)`."""

    ids: list[str]
    now: float


class RecordProgress(msgspec.Struct, frozen=True, tag="progress"):
    """`record_progress(reports, now)`."""

    reports: list[ProgressReport]
    now: float


class PurgeKept(msgspec.Struct, frozen=True, tag="purge_kept"):
    """`purge_kept(now, limit)`."""

    now: float
    limit: int


class Purge(msgspec.Struct, frozen=True, tag="purge"):
    """`purge(states, finished_before, limit)`."""

    states: list[TaskState]
    finished_before: float
    limit: int


class Pause(msgspec.Struct, frozen=True, tag="pause"):
    """`pause(queues)`, or `resume(queues)` when `resume`."""

    queues: list[str]
    resume: bool


class RecordWorkers(msgspec.Struct, frozen=True, tag="workers"):
    """`record_workers(workers)`."""

    workers: list[WorkerInfo]


class RecordInstance(msgspec.Struct, frozen=True, tag="instance"):
    """`record_instance(instance, data, now, ttl)`."""

    instance: str
    data: bytes
    now: float
    ttl: float


class ForgetWorkers(msgspec.Struct, frozen=True, tag="forget"):
    """`forget_workers(ids)`."""

    ids: list[str]


class SendControl(msgspec.Struct, frozen=True, tag="control"):
    """`send_control(instance, controls)` (ADR 0036)."""

    instance: str
    controls: list[Control]


class TakeControls(msgspec.Struct, frozen=True, tag="take_controls"):
    """`take_controls(instance)`."""

    instance: str


class Delete(msgspec.Struct, frozen=True, tag="delete"):
    """`delete(ids)`."""

    ids: list[str]


class Leader(msgspec.Struct, frozen=True, tag="leader"):
    """`leader(name, holder, ttl, now)`, or `resign(name, holder)` when `ttl` is None."""

    name: str
    holder: str
    ttl: float | None
    now: float


Op = (
    Enqueue
    | Reserve
    | Extend
    | Settle
    | RecordProgress
    | RequeueExpired
    | Cancel
    | Replay
    | Purge
    | PurgeKept
    | Pause
    | SetLimits
    | RecordWorkers
    | RecordInstance
    | ForgetWorkers
    | SendControl
    | TakeControls
    | Delete
    | Leader
)


class _Held(NamedTuple):
    """What `extend` reads of a lease."""

    task_id: str
    token: str


class Replica(MemoryBroker):
    """The state the log describes, kept in this process by applying it in order."""

    _base = ""

    def _token_base(self) -> str:
        """The prefix the operation carries, so every replica hands out the same tokens."""
        return self._base


def apply(replica: Replica, op: Op, server_now: float | None = None) -> object:
    """Apply one operation, at `server_now` (the time the server stored it) instead of the
    caller's `now` when given; its answer, or the TaskEngineError it raised (as a value)."""
    if server_now is not None and hasattr(op, "now"):
        op = replace(op, now=server_now)
    try:
        return _apply(replica, op)
    except TaskEngineError as exc:
        return exc


def _apply(replica: Replica, op: Op) -> object:
    if isinstance(op, Enqueue):
        replica.max_depth = op.max_depth
        return _now(replica.enqueue(op.tasks, op.now, op.unique))
    if isinstance(op, Reserve):
        replica._base = op.base
        leases = _now(replica.reserve(op.worker_id, op.limit, op.lease_for, op.now, op.queues))
        return Reserved(leases, replica.limited_for)
    if isinstance(op, Extend):
        held = cast(list[Lease], [_Held(task_id, token) for task_id, token in op.held])
        return _now(replica.extend(held, op.lease_for, op.now))
    if isinstance(op, Settle):
        return _now(replica.settle(op.outcomes, op.now))
    if isinstance(op, RecordProgress):
        return _now(replica.record_progress(op.reports, op.now))
    if isinstance(op, RequeueExpired):
        return _now(replica.requeue_expired(op.now, op.limit))
    if isinstance(op, Cancel):
        return _now(replica.cancel(op.ids, op.now))
    if isinstance(op, Replay):
        return _now(replica.replay(op.ids, op.now))
    if isinstance(op, Purge):
        return _now(replica.purge(op.states, op.finished_before, op.limit))
    if isinstance(op, PurgeKept):
        return _now(replica.purge_kept(op.now, op.limit))
    if isinstance(op, Pause):
        return _now(replica.resume(op.queues) if op.resume else replica.pause(op.queues))
    if isinstance(op, SetLimits):
        return _now(replica.set_limits(op.limits))
    if isinstance(op, RecordWorkers):
        return _now(replica.record_workers(op.workers))
    if isinstance(op, RecordInstance):
        return _now(replica.record_instance(op.instance, op.data, op.now, op.ttl))
    if isinstance(op, ForgetWorkers):
        return _now(replica.forget_workers(op.ids))
    if isinstance(op, SendControl):
        return _now(replica.send_control(op.instance, op.controls))
    if isinstance(op, TakeControls):
        return _now(replica.take_controls(op.instance))
    if isinstance(op, Delete):
        return _now(replica.delete(op.ids))
    if op.ttl is None:
        return _now(replica.resign(op.name, op.holder))
    return _now(replica.leader(op.name, op.holder, op.ttl, op.now))


def _now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a replica method to its end at once: the memory broker's methods never await."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("a replica operation awaited: it must run without a suspension")
