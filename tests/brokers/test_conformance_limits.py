"""Conformance: max_concurrency and rate limits per type and per queue, enforced by reserve."""

from __future__ import annotations

import pytest

from taskengine.brokers import BrokerBackend
from taskengine.clock import FakeClock
from taskengine.errors import ValidationError
from taskengine.model import OutcomeKind, TaskState
from taskengine.model.limits import Limit, LimitScope
from tests.brokers.support import Tasks, ids, outcome

TYPE = LimitScope.TYPE
QUEUE = LimitScope.QUEUE


async def test_max_concurrency_of_a_type_holds_the_rest_queued_without_an_attempt(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=TYPE, name="demo.echo", max_concurrency=2)])
    batch = tasks.many(5, now)
    await broker.enqueue(batch, now)

    first = await broker.reserve("w1", 10, 30.0, now)
    assert ids(first) == [t.id for t in batch[:2]]
    assert await broker.reserve("w2", 10, 30.0, now) == []
    waiting = await broker.get([t.id for t in batch[2:]])
    assert all(r is not None and r.state is TaskState.QUEUED for r in waiting)
    assert all(r is not None and r.attempt == 0 for r in waiting)

    assert await broker.settle([outcome(OutcomeKind.SUCCEEDED, first[0], now)], now) == [True]
    assert ids(await broker.reserve("w2", 10, 30.0, now)) == [batch[2].id]
    assert await broker.reserve("w2", 10, 30.0, now) == []


async def test_tasks_of_other_types_pass_a_full_type(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=TYPE, name="demo.slow", max_concurrency=1)])
    slow = tasks.many(3, now, type="demo.slow")
    fast = tasks.many(2, now)
    await broker.enqueue(slow + fast, now)

    got = await broker.reserve("w", 10, 30.0, now)

    assert sorted(ids(got)) == sorted([slow[0].id, fast[0].id, fast[1].id])


async def test_max_concurrency_of_a_queue_counts_every_type_in_it(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=QUEUE, name="mail", max_concurrency=2)])
    mail = tasks.many(2, now, queue="mail") + tasks.many(2, now, queue="mail", type="demo.b")
    other = tasks.many(1, now, queue="other")
    await broker.enqueue(mail + other, now)

    got = await broker.reserve("w", 10, 30.0, now)

    assert sorted(ids(got)) == sorted([mail[0].id, mail[1].id, other[0].id])


async def test_an_expired_lease_frees_its_slot(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=TYPE, name="demo.echo", max_concurrency=1)])
    batch = tasks.many(2, now)
    await broker.enqueue(batch, now)
    assert ids(await broker.reserve("w", 10, 5.0, now)) == [batch[0].id]

    later = now + 10.0
    assert await broker.requeue_expired(later, 10) == [batch[0].id]

    assert len(await broker.reserve("w", 10, 30.0, later)) == 1
    assert await broker.reserve("w", 10, 30.0, later) == []


async def test_a_limit_changed_at_run_time_applies_to_the_next_reserve(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=TYPE, name="demo.echo", max_concurrency=1)])
    await broker.enqueue(tasks.many(5, now), now)
    assert len(await broker.reserve("w", 10, 30.0, now)) == 1

    await broker.set_limits([Limit(scope=TYPE, name="demo.echo", max_concurrency=3)])
    assert len(await broker.reserve("w", 10, 30.0, now)) == 2

    await broker.set_limits([Limit(scope=TYPE, name="demo.echo")])  # empty: removed
    assert await broker.limits() == []
    assert len(await broker.reserve("w", 10, 30.0, now)) == 2


async def test_a_rate_limit_admits_the_burst_then_one_task_per_token(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=TYPE, name="demo.echo", rate=2.0, burst=2)])
    await broker.enqueue(tasks.many(10, now), now)

    assert len(await broker.reserve("w", 10, 30.0, now)) == 2
    assert await broker.reserve("w", 10, 30.0, now) == []
    assert broker.limited_for == pytest.approx(0.5)
    assert len(await broker.reserve("w", 10, 30.0, now + 0.5)) == 1
    assert await broker.reserve("w", 10, 30.0, now + 0.75) == []
    assert broker.limited_for == pytest.approx(0.25)
    assert len(await broker.reserve("w", 10, 30.0, now + 100.0)) == 2  # never above the burst


async def test_a_queue_rate_limit_leaves_other_queues_alone(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.set_limits([Limit(scope=QUEUE, name="slow", rate=1.0, burst=1)])
    slow = tasks.many(3, now, queue="slow")
    other = tasks.many(3, now)
    await broker.enqueue(slow + other, now)

    got = await broker.reserve("w", 10, 30.0, now)

    assert sorted(ids(got)) == sorted([slow[0].id] + [t.id for t in other])
    assert broker.limited_for == pytest.approx(1.0)


async def test_nothing_held_back_means_no_wait(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)

    assert len(await broker.reserve("w", 10, 30.0, now)) == 2
    assert broker.limited_for is None


async def test_limits_are_listed_by_scope_and_name(broker: BrokerBackend) -> None:
    stored = [
        Limit(scope=TYPE, name="b.type", rate=5.0),
        Limit(scope=QUEUE, name="a", max_concurrency=4, rate=0.5, burst=3),
        Limit(scope=TYPE, name="a.type", max_concurrency=1),
    ]
    await broker.set_limits(stored)

    assert await broker.limits() == sorted(stored, key=lambda lim: (lim.scope, lim.name))


@pytest.mark.parametrize(
    "bad",
    [
        Limit(scope=TYPE, name="t", max_concurrency=0),
        Limit(scope=TYPE, name="t", rate=0.0),
        Limit(scope=TYPE, name="t", rate=-1.0),
        Limit(scope=TYPE, name="t", rate=1.0, burst=0),
        Limit(scope=QUEUE, name="", max_concurrency=1),
    ],
)
async def test_invalid_limits_are_refused(broker: BrokerBackend, bad: Limit) -> None:
    with pytest.raises(ValidationError):
        await broker.set_limits([bad])
    assert await broker.limits() == []
