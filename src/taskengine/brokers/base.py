"""The broker contract: `Broker` (the hot path) and `BrokerAdmin` (inspection and control).

Every hot-path method takes and returns a sequence so a batch moves in one round trip; results
are aligned with the input and never raised on the first bad item. Every "now" is passed in.
Brokers store; they never decide: backoff and breaking live in `policy/`; the priority order key
and the records every broker writes (history lines, results) are built in `model/`.

Dependencies (ADR 0037, `model.deps`), the part of the contract every method below shares:

- A task with `depends_on` is stored `blocked`, with `waiting` = its parents not yet ended
  (`model.deps.gate` on their states), and a pending edge from each such parent; queued at
  once if every parent has succeeded (or ended at all, with `on_parent_failure="run"`);
  cancelled at once, with `model.deps.parent_failed_result`, if a parent already ended dead
  or cancelled and the task says "cancel". Every parent must be stored or earlier in the same
  `enqueue` batch, else `UnknownParent` and nothing of the batch is stored
  (`batches.check_parents_known`).
- Whatever ends a task (settle, requeue_expired, cancel) releases its dependents in the same
  atomic step: each blocked dependent's `waiting` goes down by one (queued at zero, due as
  submitted), or, when the parent failed and the dependent says "cancel", the dependent is
  cancelled with a result naming the parent, and so on down the graph. A blocked task is never
  reserved and is not counted in the depth.
- `cancel` cancels blocked tasks like queued ones; the ids named are answered first, then their
  dependents are cancelled. `replay` gates a replayed task again: blocked while a parent is
  unfinished (so replaying a workflow parents first re-blocks what waited), NOT_REPLAYABLE
  while a parent's failure would cancel it again.
- `TaskFilter.workflow` lists the tasks of one workflow (`Task.workflow`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

import msgspec

from taskengine.errors import ValidationError
from taskengine.model import (
    Lease,
    LeaseStatus,
    Outcome,
    Priority,
    ProgressReport,
    Task,
    TaskRecord,
    TaskState,
)
from taskengine.model.limits import Limit
from taskengine.model.unique import UniqueLock
from taskengine.model.worker import WorkerInfo

DEFAULT_MAX_DEPTH = 1_000_000


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend can and cannot do; the conformance suite asserts each flag."""

    durable: bool  # an acknowledged enqueue survives a crash of the process
    shared: bool  # several OS processes can use one broker and never double-claim
    push_wakeup: bool  # an enqueue from another process wakes an idle waiter without polling


class EnqueueResult(msgspec.Struct, frozen=True):
    """Per-task answer of `enqueue`: the id stored, and whether this call created it."""

    id: str
    created: bool  # False: a task with this id or idempotency key already existed


class CancelResult(StrEnum):
    """Per-task answer of `cancel`."""

    CANCELLED = "cancelled"  # was queued; now cancelled
    REQUESTED = "requested"  # is running; its worker is told through `extend`
    FINISHED = "finished"  # already succeeded, dead or cancelled: nothing to do
    NOT_FOUND = "not_found"


class ReplayResult(StrEnum):
    """Per-task answer of `replay`."""

    REPLAYED = "replayed"
    NOT_REPLAYABLE = "not_replayable"  # not dead or cancelled
    NOT_FOUND = "not_found"


class TaskFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which tasks `list_tasks` returns; None means any."""

    states: frozenset[TaskState] | None = None
    types: frozenset[str] | None = None
    queues: frozenset[str] | None = None
    priorities: frozenset[Priority] | None = None
    created_after: float | None = None  # inclusive
    created_before: float | None = None  # exclusive
    workflow: str | None = None  # the nodes of one workflow (Task.workflow)


class Page(msgspec.Struct, frozen=True):
    """One page of `list_tasks`, newest first; pass `next_cursor` to get the next one."""

    items: list[TaskRecord]
    next_cursor: str | None


class CountRow(msgspec.Struct, frozen=True):
    """How many tasks one (queue, state, priority) holds; for queued tasks, also the oldest
    one's creation time (None for the other states, which brokers count without ordering)."""

    queue: str
    state: TaskState
    priority: Priority
    count: int
    oldest_created_at: float | None


class ControlCommand(StrEnum):
    """What an operator asks one engine instance to do (ADR 0036)."""

    DRAIN = "drain"  # stop taking tasks; the running ones finish
    RESUME = "resume"  # take tasks again after a drain
    RESIZE = "resize"  # run `size` workers
    SHUTDOWN = "shutdown"  # stop gracefully, as on SIGTERM


class Control(msgspec.Struct, frozen=True, kw_only=True):
    """One remote-control command for an instance, as `send_control` stores it."""

    command: ControlCommand
    sent_at: float
    size: int | None = None  # RESIZE only: the new pool size


# `pause` also keeps switches every instance must agree on: a name beginning with "@" is no queue
# (a queue name starts with a letter or a digit). A disabled periodic task is paused as
# PERIODIC_OFF + its name (ADR 0036); `paused()` returns them with the queues.
PERIODIC_OFF = "@periodic:"

CONTROL_TTL = 3600.0  # seconds a command waits for its instance before a broker may drop it


class InstanceReport(msgspec.Struct, frozen=True):
    """One engine process's telemetry as its last heartbeat published it; brokers store the
    bytes as they are and never read them (telemetry/report.py says what they hold)."""

    instance: str
    expires_at: float  # the publisher's `now + ttl`
    data: bytes


class Broker(Protocol):
    """The hot path: enqueue, reserve, extend, settle, requeue expired leases, wait for work."""

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do."""
        ...

    async def start(self) -> None:
        """Connect and create what is missing (schema, scripts). Idempotent."""
        ...

    async def close(self) -> None:
        """Finish pending writes and disconnect. Idempotent."""
        ...

    async def enqueue(
        self,
        tasks: Sequence[Task],
        now: float,
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        """Store tasks as queued (blocked or cancelled, by their parents: see the module's
        docstring), one result per task in input order.

        Uniqueness (ADR 0038): `unique`, aligned with `tasks`, gives the lock each asks for. A
        task whose lock key is held (by a stored lock whose `until` is not past or whose
        holder is in its `states`, or earlier in the batch) is a duplicate answered with the
        holder's id; otherwise the task takes the lock, in the same atomic step
        (model.unique.lock_holds, batches.split_unique).

        A task whose id or idempotency key is already stored (or earlier in the batch) is a
        duplicate: nothing changes and the existing id is returned. Atomic: if the new tasks
        would take the queued count past the depth limit, QueueFull is raised and nothing is
        stored. A task created after `now` (a producer's clock ahead) is recorded as created
        at `now`, and due then if it was to run at once (model.records.as_received).
        """
        ...

    async def reserve(
        self,
        worker_id: str,
        limit: int,
        lease_for: float,
        now: float,
        queues: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` due tasks (run_at <= now) of unpaused queues, lowest order key
        first (model.priority), each under a new token until `now + lease_for`. The attempt
        counter goes up by one. A task is claimed by one caller only, across processes for
        shared backends.

        Limits (ADR 0038): a task whose type or queue has a stored `Limit` is claimed only if
        both have room, checked and taken in the same atomic step as the claim: fewer than
        `max_concurrency` of the scope's tasks running (across every caller), and a whole
        token in the scope's bucket (`rate` per second, up to `burst`, kept in the broker).
        A task held back stays queued with its attempt untouched, and tasks behind it of
        other scopes are still claimed. When a bucket is left without a whole token,
        `limited_for` says how long until one is due. The limits: `set_limits`, ADR 0038."""
        ...

    @property
    def limited_for(self) -> float | None:
        """Seconds after the last `reserve` of this object until the emptiest rate-limit
        bucket it left without a whole token gets one (a task it held back may be claimed
        then); None when every bucket held a token. The fetcher waits no longer than this."""
        ...

    async def extend(
        self, leases: Sequence[Lease], lease_for: float, now: float
    ) -> list[LeaseStatus]:
        """Push each held lease's expiry to `now + lease_for`; say which are lost (token no
        longer current, or expired and requeued) or have a cancel request. A lease past its
        expiry that nobody has requeued yet is still held, and extending revives it."""
        ...

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply a mixed batch of outcomes; each is applied only if its token is current
        (True) and refused otherwise (False), independently of the others. A task that ends
        releases or cancels its dependents in the same atomic step (module docstring).

        Result retention (ADR 0035): a task stored with `keep_result == 0` that settles as
        succeeded is deleted by this settle, record, history and idempotency key together, as
        `purge` would (its dependents released first); any other outcome of it is applied as
        usual."""
        ...

    async def record_progress(self, reports: Sequence[ProgressReport], now: float) -> list[bool]:
        """Store each report's `progress` on its task's record (replacing the one before) if
        its token is the task's current lease (True); drop it otherwise (False: settled,
        requeued, re-leased, unknown), independently of the others. Nothing else changes
        (not `updated_at`); settle keeps the last progress stored. The engine sends one call
        per flush for all its tasks (at most one report per task a second); a broker writes
        them in one round trip. A translation of `extend`'s fencing: same check, one field."""
        ...

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Move up to `limit` running tasks whose lease expired before `now` back to queued
        (or to cancelled, if cancel was requested), recording the lost attempt. Returns ids."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new work may be ready, or after `timeout` seconds."""
        ...


class BrokerAdmin(Protocol):
    """Inspection and control for the API, the dashboard, the CLI and singleton duties."""

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Return each task's record with its history, or None where unknown."""
        ...

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Return matching tasks newest first (by id), at most `limit`, after `cursor`."""
        ...

    async def counts(self) -> list[CountRow]:
        """Return task counts per (queue, state, priority)."""
        ...

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued and blocked tasks at once (then their dependents) and flag running
        ones for their worker."""
        ...

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued (or blocked, by their parents), due now,
        with a fresh attempt count, in input order."""
        ...

    async def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete finished tasks (succeeded, dead, cancelled) by id, with their history and
        idempotency key, as `purge` does; True where deleted, False where unknown or not
        finished (a queued or running task is never deleted)."""
        ...

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` tasks in terminal `states` that finished before the time, the
        earliest first. A succeeded task with a `keep_result` of its own is left to
        `purge_kept`."""
        ...

    async def purge_kept(self, now: float, limit: int) -> int:
        """Delete up to `limit` succeeded tasks whose own `keep_result` ran out before `now`
        (finished_at + keep_result < now), the earliest expiry first (ADR 0035)."""
        ...

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop `reserve` from taking tasks of these queues (names beginning with "@" are
        switches, not queues: see PERIODIC_OFF)."""
        ...

    async def resume(self, queues: Sequence[str]) -> None:
        """Let `reserve` take tasks of these queues again."""
        ...

    async def paused(self) -> set[str]:
        """Return the paused queue names."""
        ...

    async def send_control(self, instance: str, controls: Sequence[Control]) -> None:
        """Append commands to `instance`'s control channel (read by its `take_controls`).

        A command its instance has not taken within CONTROL_TTL may be dropped."""
        ...

    async def take_controls(self, instance: str) -> list[Control]:
        """Remove and return the commands waiting for `instance`, oldest first; each command
        is returned by one call only. Cheap when there are none (polled every 0.5 s)."""

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Store each limit in place of its scope's (an empty one removes it); a bucket kept
        for the scope keeps its tokens, at most the new burst. Read by every `reserve`."""
        ...

    async def limits(self) -> list[Limit]:
        """Return the stored limits by (scope, name)."""
        ...

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace these workers in the registry."""
        ...

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove these workers from the registry."""
        ...

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Return workers whose last heartbeat is at or after `seen_since`, by id."""
        ...

    async def record_instance(self, instance: str, data: bytes, now: float, ttl: float) -> None:
        """Insert or replace `instance`'s report, kept until `now + ttl`; reports that expired
        before `now` are deleted in the same call. One round trip; atomic."""
        ...

    async def instances(self, now: float) -> list[InstanceReport]:
        """Return the reports not expired at `now` (`expires_at >= now`), by instance."""
        ...

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew the lease on singleton duty `name` for `holder`; True if held."""
        ...

    async def resign(self, name: str, holder: str) -> None:
        """Give up `name` if `holder` holds it."""
        ...


class BrokerBackend(Broker, BrokerAdmin, Protocol):
    """A backend implements both halves of the contract."""


def check_limit(limit: int, name: str = "limit") -> None:
    """Raise ValidationError unless `limit` is a positive integer."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"{name} must be a positive integer, got {limit!r}")


def check_lease_for(lease_for: float) -> None:
    """Raise ValidationError unless `lease_for` is a positive duration."""
    if not lease_for > 0:
        raise ValidationError(f"lease_for must be positive, got {lease_for!r}")
