"""Conformance: enqueue batches, duplicates, backpressure and scheduled tasks."""

from __future__ import annotations

import pytest

from taskengine.brokers import BrokerBackend, EnqueueResult
from taskengine.clock import FakeClock
from taskengine.errors import QueueFull
from taskengine.model import OutcomeKind, Priority, TaskState
from tests.brokers.support import MakeBroker, Tasks, ids, outcome


async def test_batch_results_are_aligned_and_records_stored(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = [
        tasks(now, priority=Priority.HIGH, queue="mail"),
        tasks(now, type="demo.sum", timeout=5.0, max_attempts=3),
        tasks(now, delay=30.0),
    ]

    results = await broker.enqueue(batch, now)

    assert results == [EnqueueResult(t.id, True) for t in batch]
    records = await broker.get([t.id for t in batch])
    for task, record in zip(batch, records, strict=True):
        assert record is not None
        assert record.state is TaskState.QUEUED
        assert record.attempt == 0
        assert record.history == []
        assert record.result is None
        for field in (
            "id",
            "type",
            "payload",
            "priority",
            "queue",
            "created_at",
            "run_at",
            "timeout",
            "max_attempts",
            "idempotency_key",
        ):
            assert getattr(record, field) == getattr(task, field), field


async def test_empty_batch(broker: BrokerBackend, clock: FakeClock) -> None:
    assert await broker.enqueue([], clock.now()) == []


async def test_duplicate_id_changes_nothing(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    first = tasks(now, priority="low")
    await broker.enqueue([first], now)
    clock.advance(5)
    again = tasks(clock.now(), type="demo.other", priority="high", task_id=first.id)

    results = await broker.enqueue([again], clock.now())

    assert results == [EnqueueResult(first.id, False)]
    [record] = await broker.get([first.id])
    assert record is not None
    assert (record.type, record.priority, record.created_at) == ("demo.echo", Priority.LOW, now)


async def test_duplicate_idempotency_key_returns_first_id(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    first = tasks(now, idempotency_key="order-17")
    await broker.enqueue([first], now)
    other = tasks(now, idempotency_key="order-17")

    results = await broker.enqueue([other], now)

    assert results == [EnqueueResult(first.id, False)]
    assert await broker.get([other.id]) == [None]


async def test_duplicates_inside_one_batch(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    a = tasks(now, idempotency_key="k1")
    b = tasks(now)
    same_key = tasks(now, idempotency_key="k1")
    same_id = tasks(now, task_id=b.id, type="demo.other")
    c = tasks(now, idempotency_key="k2")

    results = await broker.enqueue([a, b, same_key, same_id, c], now)

    assert results == [
        EnqueueResult(a.id, True),
        EnqueueResult(b.id, True),
        EnqueueResult(a.id, False),
        EnqueueResult(b.id, False),
        EnqueueResult(c.id, True),
    ]
    records = await broker.get([a.id, b.id, same_key.id, c.id])
    assert [r.id if r else None for r in records] == [a.id, b.id, None, c.id]
    assert records[1] is not None
    assert records[1].type == "demo.echo"


async def test_queue_full_refuses_the_whole_batch(
    make_broker: MakeBroker, clock: FakeClock, tasks: Tasks
) -> None:
    broker = await make_broker(max_depth=5)
    now = clock.now()
    stored = tasks.many(3, now)
    await broker.enqueue(stored, now)
    refused = tasks.many(3, now)

    # 3 queued + 3 new > 5: the whole batch is refused
    with pytest.raises(QueueFull):
        await broker.enqueue(refused, now)

    assert await broker.get([t.id for t in refused]) == [None, None, None]
    fits = tasks.many(2, now)
    assert all(r.created for r in await broker.enqueue(fits, now))
    with pytest.raises(QueueFull):
        await broker.enqueue([tasks(now)], now)
    leases = await broker.reserve("w", 10, 30.0, now)
    assert len(leases) == 5


async def test_queue_full_counts_only_new_tasks(
    make_broker: MakeBroker, clock: FakeClock, tasks: Tasks
) -> None:
    """Duplicates are not stored, so a batch of duplicates is accepted at the limit."""
    broker = await make_broker(max_depth=2)
    now = clock.now()
    stored = tasks.many(2, now, idempotency_key=None)
    await broker.enqueue(stored, now)

    results = await broker.enqueue(stored, now)

    assert results == [EnqueueResult(t.id, False) for t in stored]


async def test_depth_frees_up_when_tasks_leave_the_queue(
    make_broker: MakeBroker, clock: FakeClock, tasks: Tasks
) -> None:
    broker = await make_broker(max_depth=2)
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)
    await broker.reserve("w", 2, 30.0, now)

    results = await broker.enqueue(tasks.many(2, now), now)

    assert all(r.created for r in results)


async def test_future_task_is_not_reserved_before_run_at(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    later = tasks(now, delay=60.0)
    due = tasks(now)
    await broker.enqueue([later, due], now)

    assert ids(await broker.reserve("w", 10, 30.0, now)) == [due.id]
    assert await broker.reserve("w", 10, 30.0, clock.advance(59.5)) == []
    [lease] = await broker.reserve("w", 10, 30.0, clock.advance(0.5))
    assert lease.task_id == later.id


async def test_future_task_is_reserved_after_run_at(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    later = tasks(now, run_at=now + 10)
    await broker.enqueue([later], now)

    [lease] = await broker.reserve("w", 10, 30.0, clock.advance(3600))

    assert lease.task_id == later.id


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_the_trace_context_stays_with_the_task_through_retry_and_replay(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    traced, plain = tasks(now, trace=TRACEPARENT), tasks(now)
    await broker.enqueue([traced, plain], now)

    stored = await broker.get([traced.id, plain.id])
    assert [record.trace if record else "missing" for record in stored] == [TRACEPARENT, None]
    leases = await broker.reserve("w1", 10, 30.0, now)
    assert {lease.task_id: lease.record.trace for lease in leases} == {
        traced.id: TRACEPARENT,
        plain.id: None,
    }
    lease = next(lease for lease in leases if lease.task_id == traced.id)
    again_at = clock.advance(1) + 5
    failed = outcome(OutcomeKind.RETRY, lease, clock.now(), run_at=again_at, error="boom")
    assert await broker.settle([failed], clock.now()) == [True]
    clock.advance(10)
    [retried] = await broker.reserve("w1", 1, 30.0, clock.now())
    assert (retried.task_id, retried.record.trace) == (traced.id, TRACEPARENT)
    dead = outcome(OutcomeKind.DEAD, retried, clock.advance(1), error="fatal")
    assert await broker.settle([dead], clock.now()) == [True]
    await broker.replay([traced.id], clock.now())
    [replayed] = await broker.reserve("w1", 1, 30.0, clock.advance(1))
    assert (replayed.task_id, replayed.record.trace) == (traced.id, TRACEPARENT)
