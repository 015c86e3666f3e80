"""Conformance: result retention per task (keep_result), on every broker.

keep_result=0: a task that succeeds is deleted by the settle itself (its idempotency key with
it); one that ends dead or cancelled keeps its record. keep_result=T: the record is deleted by
`purge_kept` once T seconds passed since it finished, and the global `purge` leaves it alone."""

from __future__ import annotations

from taskengine.brokers import BrokerBackend, TaskFilter
from taskengine.clock import FakeClock
from taskengine.model import Lease, OutcomeKind, TaskState
from tests.brokers.support import Tasks, outcome


async def _settled(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks, kind: OutcomeKind, **kw: object
) -> Lease:
    now = clock.now()
    task = tasks(now, **kw)
    await broker.enqueue([task], now)
    [lease] = await broker.reserve("w", 1, 30.0, now, queues=[task.queue])
    assert lease.task_id == task.id
    assert lease.record.keep_result == kw.get("keep_result")
    assert await broker.settle([outcome(kind, lease, now)], now) == [True]
    return lease


async def _listed(broker: BrokerBackend) -> set[str]:
    page = await broker.list_tasks(TaskFilter(), 1000)
    return {record.id for record in page.items}


async def test_keep_result_is_stored_with_the_task(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    kept, default = tasks(now, keep_result=3600.0), tasks(now)
    await broker.enqueue([kept, default], now)
    records = await broker.get([kept.id, default.id])
    assert [r.keep_result if r else "missing" for r in records] == [3600.0, None]


async def test_keep_result_zero_deletes_a_succeeded_task_at_settle(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    gone = await _settled(
        broker, clock, tasks, OutcomeKind.SUCCEEDED, keep_result=0.0, idempotency_key="k"
    )
    kept = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)
    assert await broker.get([gone.task_id]) == [None]
    assert await _listed(broker) == {kept.task_id}
    counts = await broker.counts()
    assert [(r.state, r.count) for r in counts] == [(TaskState.SUCCEEDED, 1)]
    now = clock.now()
    again = tasks(now, idempotency_key="k")  # the key went with its task
    [result] = await broker.enqueue([again], now)
    assert (result.id, result.created) == (again.id, True)


async def test_keep_result_zero_keeps_dead_and_cancelled_records(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    dead = await _settled(broker, clock, tasks, OutcomeKind.DEAD, keep_result=0.0)
    cancelled = await _settled(broker, clock, tasks, OutcomeKind.CANCELLED, keep_result=0.0)
    records = await broker.get([dead.task_id, cancelled.task_id])
    assert [r.state if r else None for r in records] == [TaskState.DEAD, TaskState.CANCELLED]


async def test_keep_result_zero_is_not_deleted_by_a_retry(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    task = tasks(now, keep_result=0.0)
    await broker.enqueue([task], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    assert await broker.settle([outcome(OutcomeKind.RETRY, lease, now, run_at=now)], now) == [True]
    [record] = await broker.get([task.id])
    assert record is not None and record.state is TaskState.QUEUED


async def test_a_ttl_purges_at_finished_at_plus_ttl_not_at_the_global_retention(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    short = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED, keep_result=10.0)
    long = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED, keep_result=1000.0)
    default = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)
    dead = await _settled(broker, clock, tasks, OutcomeKind.DEAD, keep_result=10.0)

    assert await broker.purge_kept(clock.advance(5), 100) == 0  # nothing due yet
    assert await broker.purge_kept(clock.advance(6), 100) == 1  # 11 s: the 10 s one
    assert await broker.get([short.task_id]) == [None]

    # the global purge (everything finished before now) leaves a task with its own TTL alone,
    # and a dead task keeps the dead-letter retention whatever its keep_result
    cutoff = clock.advance(100)
    assert await broker.purge([TaskState.SUCCEEDED], cutoff, 100) == 1
    records = await broker.get([long.task_id, default.task_id, dead.task_id])
    assert [r.state if r else None for r in records] == [
        TaskState.SUCCEEDED,
        None,
        TaskState.DEAD,
    ]
    assert await broker.purge_kept(clock.advance(1000), 100) == 1
    assert await broker.get([long.task_id]) == [None]
    assert await _listed(broker) == {dead.task_id}
    assert [(r.state, r.count) for r in await broker.counts()] == [(TaskState.DEAD, 1)]


async def test_purge_kept_honours_limit_oldest_expiry_first(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    late = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED, keep_result=50.0)
    early = [
        await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED, keep_result=5.0)
        for _ in range(3)
    ]
    now = clock.advance(60)
    assert await broker.purge_kept(now, 2) == 2
    assert await broker.get([late.task_id]) != [None]
    assert await broker.purge_kept(now, 2) == 2
    assert await broker.purge_kept(now, 2) == 0
    assert await broker.get([late.task_id, *(lease.task_id for lease in early)]) == [None] * 4
