"""Conformance: extend, fencing by token, and requeue of expired leases."""

from __future__ import annotations

import pytest

from taskengine.brokers import BrokerBackend, CancelResult
from taskengine.clock import FakeClock
from taskengine.errors import ValidationError
from taskengine.model import LeaseStatus, OutcomeKind, ResultStatus, TaskState
from tests.brokers.support import Tasks, ids, outcome


async def test_extend_with_current_token_is_held(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)

    assert await broker.extend([lease], 30.0, clock.advance(20)) == [LeaseStatus.HELD]

    [record] = await broker.get([lease.task_id])
    assert record is not None
    assert record.lease_expires_at == clock.now() + 30.0
    # past the first expiry, but not the extended one: nothing to requeue
    assert await broker.requeue_expired(clock.advance(20), 100) == []
    assert await broker.extend([lease], 30.0, clock.now()) == [LeaseStatus.HELD]


async def test_extend_after_expiry_and_requeue_is_lost(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    clock.advance(31)

    assert await broker.requeue_expired(clock.now(), 100) == [lease.task_id]
    assert await broker.extend([lease], 30.0, clock.now()) == [LeaseStatus.LOST]


async def test_extend_after_settle_is_lost(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)
    done, released = await broker.reserve("w", 2, 30.0, now)
    await broker.settle(
        [outcome(OutcomeKind.SUCCEEDED, done, now), outcome(OutcomeKind.RELEASED, released, now)],
        now,
    )

    assert await broker.extend([done, released], 30.0, clock.advance(1)) == [
        LeaseStatus.LOST,
        LeaseStatus.LOST,
    ]


async def test_extend_reports_a_cancel_request(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)
    doomed, kept = await broker.reserve("w", 2, 30.0, now)

    assert await broker.cancel([doomed.task_id], clock.advance(1)) == [CancelResult.REQUESTED]

    assert await broker.extend([doomed, kept], 30.0, clock.now()) == [
        LeaseStatus.CANCEL_REQUESTED,
        LeaseStatus.HELD,
    ]
    [record] = await broker.get([doomed.task_id])
    assert record is not None
    assert record.state is TaskState.RUNNING
    assert record.cancel_requested is True
    stop = outcome(OutcomeKind.CANCELLED, doomed, clock.now())
    assert await broker.settle([stop], clock.now()) == [True]
    [record] = await broker.get([doomed.task_id])
    assert record is not None
    assert record.state is TaskState.CANCELLED


async def test_stale_token_settle_is_refused_and_newer_result_stands(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [old] = await broker.reserve("slow", 1, 10.0, now)
    assert await broker.requeue_expired(clock.advance(11), 10) == [old.task_id]
    [new] = await broker.reserve("fast", 1, 10.0, clock.now())
    assert new.record.attempt == 2

    late = outcome(OutcomeKind.SUCCEEDED, old, clock.advance(1), data="stale")
    assert await broker.settle([late], clock.now()) == [False]
    assert await broker.extend([old], 10.0, clock.now()) == [LeaseStatus.LOST]
    assert await broker.extend([new], 10.0, clock.now()) == [LeaseStatus.HELD]

    fresh = outcome(OutcomeKind.SUCCEEDED, new, clock.now(), data="fresh")
    assert await broker.settle([fresh], clock.now()) == [True]
    assert await broker.settle([late], clock.now()) == [False]
    [record] = await broker.get([new.task_id])
    assert record is not None
    assert record.state is TaskState.SUCCEEDED
    assert record.result == fresh.result
    assert record.attempt == 2


async def test_second_settle_with_same_token_is_refused(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    first = outcome(OutcomeKind.RETRY, lease, now, run_at=now)

    assert await broker.settle([first], now) == [True]
    assert await broker.settle([outcome(OutcomeKind.DEAD, lease, now)], now) == [False]

    [record] = await broker.get([lease.task_id])
    assert record is not None
    assert record.state is TaskState.QUEUED


async def test_requeue_expired_takes_only_expired_leases(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    short, long = tasks.many(2, now)
    await broker.enqueue([short, long], now)
    await broker.reserve("w1", 1, 10.0, now)
    await broker.reserve("w2", 1, 100.0, now)

    assert await broker.requeue_expired(clock.advance(5), 100) == []
    assert await broker.requeue_expired(clock.advance(50), 100) == [short.id]

    lost, running = await broker.get([short.id, long.id])
    assert lost is not None
    assert running is not None
    assert running.state is TaskState.RUNNING
    assert lost.state is TaskState.QUEUED
    assert lost.attempt == 1
    assert lost.lease_expires_at is None
    assert len(lost.history) == 1
    line = lost.history[0]
    assert line.attempt == 1
    assert line.status in (ResultStatus.FAILURE, ResultStatus.TIMEOUT)
    assert line.error is not None
    assert "lease expired" in line.error
    [again] = await broker.reserve("w3", 5, 30.0, clock.now())
    assert again.task_id == short.id
    assert again.record.attempt == 2


async def test_requeue_expired_cancels_when_cancel_was_requested(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 10.0, now)
    await broker.cancel([lease.task_id], now)

    assert await broker.requeue_expired(clock.advance(11), 100) == [lease.task_id]

    [record] = await broker.get([lease.task_id])
    assert record is not None
    assert record.state is TaskState.CANCELLED
    assert record.history
    assert "lease expired" in (record.history[-1].error or "")
    assert await broker.reserve("w", 5, 30.0, clock.now()) == []


async def test_requeue_expired_on_the_last_attempt_is_dead_not_queued(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    last, spare = tasks(now, max_attempts=1), tasks(now, max_attempts=2)
    await broker.enqueue([last, spare], now)
    await broker.reserve("w", 2, 10.0, now)

    assert sorted(await broker.requeue_expired(clock.advance(11), 100)) == sorted(
        [last.id, spare.id]
    )

    dead, queued = await broker.get([last.id, spare.id])
    assert dead is not None
    assert queued is not None
    assert queued.state is TaskState.QUEUED
    assert dead.state is TaskState.DEAD
    assert dead.attempt == 1
    assert dead.finished_at == clock.now()
    assert dead.lease_expires_at is None
    assert dead.result is not None
    assert dead.result.status is ResultStatus.FAILURE
    assert dead.result.attempt == 1
    assert "attempts exhausted (1 of 1)" in (dead.result.error or "")
    assert "lease expired" in (dead.result.error or "")
    assert [line.error for line in dead.history] == ["lease expired"]
    # never reserved again: the attempts never pass max_attempts
    [again] = await broker.reserve("w", 5, 10.0, clock.now())
    assert again.task_id == spare.id
    assert again.record.attempt == 2
    assert await broker.requeue_expired(clock.advance(11), 100) == [spare.id]
    [spent] = await broker.get([spare.id])
    assert spent is not None
    assert spent.state is TaskState.DEAD
    assert spent.attempt == 2
    assert await broker.reserve("w", 5, 10.0, clock.now()) == []


async def test_requeue_expired_honours_limit(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = tasks.many(5, now)
    await broker.enqueue(batch, now)
    await broker.reserve("w", 5, 10.0, now)
    clock.advance(11)

    first = await broker.requeue_expired(clock.now(), 2)
    second = await broker.requeue_expired(clock.now(), 2)
    third = await broker.requeue_expired(clock.now(), 2)

    assert (len(first), len(second), len(third)) == (2, 2, 1)
    assert sorted(first + second + third) == sorted(t.id for t in batch)
    assert await broker.requeue_expired(clock.now(), 2) == []
    assert sorted(ids(await broker.reserve("w", 10, 10.0, clock.now()))) == sorted(
        t.id for t in batch
    )


async def test_requeue_expired_rejects_bad_limit(broker: BrokerBackend, clock: FakeClock) -> None:
    with pytest.raises(ValidationError):
        await broker.requeue_expired(clock.now(), 0)
