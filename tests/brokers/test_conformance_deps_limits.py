"""Conformance: dependencies beside limits and unique locks (ADR 0037 with ADR 0038)."""

from __future__ import annotations

from taskengine.brokers import BrokerBackend
from taskengine.clock import FakeClock
from taskengine.model import OutcomeKind, TaskState
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.unique import UniqueLock, UniqueWhile
from tests.brokers.support import Tasks, ids, outcome


async def test_deleting_a_cancelled_dependent_frees_its_unique_lock(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child, repeat = tasks(now, depends_on=[parent.id]), tasks(now)
    lock = UniqueLock(key="k", seconds=3600.0)
    await broker.enqueue([parent], now)
    await broker.enqueue([child], now, [lock])
    assert (await broker.enqueue([repeat], now, [lock]))[0].id == child.id

    await broker.cancel([parent.id], now)  # the blocked dependent is cancelled with it
    [record] = await broker.get([child.id])
    assert record is not None and record.state is TaskState.CANCELLED
    assert await broker.delete([child.id]) == [True]

    [again] = await broker.enqueue([repeat], now, [lock])
    assert (again.id, again.created) == (repeat.id, True)


async def test_a_parent_held_back_by_a_limit_keeps_its_dependent_blocked_until_it_succeeds(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=LimitScope.TYPE, name="demo.slow", max_concurrency=1)])
    a, b = tasks(now, type="demo.slow"), tasks(now, type="demo.slow")
    child = tasks(now, depends_on=[a.id, b.id])
    await broker.enqueue([a, b, child], now)

    [first] = await broker.reserve("w", 10, 30.0, now)  # b is held back by the limit
    assert await broker.reserve("w", 10, 30.0, now) == []
    assert await broker.settle([outcome(OutcomeKind.SUCCEEDED, first, now)], now) == [True]
    [record] = await broker.get([child.id])
    assert record is not None and (record.state, record.waiting) == (TaskState.BLOCKED, 1)

    [second] = await broker.reserve("w", 10, 30.0, now)
    assert second.task_id != first.task_id
    assert await broker.settle([outcome(OutcomeKind.SUCCEEDED, second, now)], now) == [True]
    assert ids(await broker.reserve("w", 10, 30.0, now)) == [child.id]


async def test_a_blocked_holder_keeps_its_unique_while_lock_until_it_runs(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    queued_child = tasks(now, depends_on=[parent.id])
    running_child = tasks(now, depends_on=[parent.id])
    while_queued = UniqueLock(key="q", states=UniqueWhile.QUEUED.states)
    while_running = UniqueLock(key="r", states=UniqueWhile.RUNNING.states)
    await broker.enqueue([parent], now)
    await broker.enqueue([queued_child, running_child], now, [while_queued, while_running])

    # Both holders are blocked: they have not run, so a repeat is answered with them.
    repeats = await broker.enqueue([tasks(now), tasks(now)], now, [while_queued, while_running])
    assert [(r.id, r.created) for r in repeats] == [
        (queued_child.id, False),
        (running_child.id, False),
    ]

    [lease] = await broker.reserve("w", 1, 30.0, now)
    assert lease.task_id == parent.id
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, now)], now)
    after = await broker.enqueue([tasks(now), tasks(now)], now, [while_queued, while_running])
    assert [(r.id, r.created) for r in after] == [
        (queued_child.id, False),
        (running_child.id, False),
    ]


async def test_a_blocked_holder_cancelled_by_its_failed_parent_frees_its_unique_lock(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id])
    lock = UniqueLock(key="k", states=UniqueWhile.RUNNING.states)
    await broker.enqueue([parent], now)
    await broker.enqueue([child], now, [lock])
    assert (await broker.enqueue([tasks(now)], now, [lock]))[0].id == child.id

    [lease] = await broker.reserve("w", 1, 30.0, now)
    await broker.settle([outcome(OutcomeKind.DEAD, lease, now)], now)
    [record] = await broker.get([child.id])
    assert record is not None and record.state is TaskState.CANCELLED

    repeat = tasks(now)
    [again] = await broker.enqueue([repeat], now, [lock])
    assert (again.id, again.created) == (repeat.id, True)
