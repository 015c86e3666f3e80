"""Conformance: every outcome kind's resulting record, and attempt numbering across retries."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from taskengine.brokers import BrokerBackend, CancelResult
from taskengine.clock import FakeClock
from taskengine.model import Lease, LeaseStatus, OutcomeKind, ResultStatus, TaskRecord, TaskState
from taskengine.model.records import CANCEL_HONOURED
from tests.brokers.support import Tasks, ids, outcome


async def _one(broker: BrokerBackend, clock: FakeClock, tasks: Tasks, **kw: object) -> Lease:
    now = clock.now()
    await broker.enqueue([tasks(now, **kw)], now)
    [lease] = await broker.reserve("w1", 1, 30.0, now)
    return lease


async def _get(broker: BrokerBackend, task_id: str) -> TaskRecord:
    [record] = await broker.get([task_id])
    assert record is not None
    return record


async def test_succeeded(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    lease = await _one(broker, clock, tasks)
    done = outcome(OutcomeKind.SUCCEEDED, lease, clock.advance(2), data={"sum": 3})

    assert await broker.settle([done], clock.now()) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 1
    assert record.result == done.result
    assert record.finished_at == clock.now()
    assert record.lease_expires_at is None
    assert [(h.attempt, h.status, h.error) for h in record.history] == [
        (1, ResultStatus.SUCCESS, None)
    ]
    assert await broker.reserve("w", 5, 30.0, clock.advance(3600)) == []


async def test_retry_runs_again_only_at_its_time(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _one(broker, clock, tasks)
    again_at = clock.now() + 60
    failed = outcome(OutcomeKind.RETRY, lease, clock.advance(1), run_at=again_at, error="boom")

    assert await broker.settle([failed], clock.now()) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.QUEUED
    assert record.attempt == 1
    assert record.run_at == again_at
    assert record.result == failed.result
    assert [(h.attempt, h.status, h.error) for h in record.history] == [
        (1, ResultStatus.FAILURE, "boom")
    ]
    clock.set(again_at - 0.5)
    assert await broker.reserve("w", 5, 30.0, clock.now()) == []
    clock.set(again_at)
    [second] = await broker.reserve("w2", 5, 30.0, clock.now())
    assert second.task_id == lease.task_id
    assert second.record.attempt == 2
    assert second.token != lease.token


async def test_snooze_gives_the_attempt_back(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _one(broker, clock, tasks)
    later = clock.now() + 45

    assert await broker.settle(
        [outcome(OutcomeKind.SNOOZE, lease, clock.now(), run_at=later)], clock.now()
    ) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.QUEUED
    assert record.attempt == 0
    assert record.run_at == later
    assert record.history == []
    assert await broker.reserve("w", 5, 30.0, clock.advance(44)) == []
    [again] = await broker.reserve("w", 5, 30.0, clock.advance(1))
    assert again.record.attempt == 1


async def test_dead(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    lease = await _one(broker, clock, tasks)
    fatal = outcome(OutcomeKind.DEAD, lease, clock.advance(1), error="not retryable")

    assert await broker.settle([fatal], clock.now()) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.DEAD
    assert record.attempt == 1
    assert record.result == fatal.result
    assert record.finished_at == clock.now()
    assert [(h.attempt, h.status, h.error) for h in record.history] == [
        (1, ResultStatus.FAILURE, "not retryable")
    ]
    assert await broker.reserve("w", 5, 30.0, clock.advance(3600)) == []


async def test_cancelled(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    lease = await _one(broker, clock, tasks)
    stop = outcome(OutcomeKind.CANCELLED, lease, clock.advance(1))

    assert await broker.settle([stop], clock.now()) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.CANCELLED
    assert record.attempt == 1
    assert record.result == stop.result
    assert [(h.attempt, h.status) for h in record.history] == [(1, ResultStatus.CANCELLED)]
    assert await broker.reserve("w", 5, 30.0, clock.advance(3600)) == []


async def test_released_gives_the_attempt_back_and_keeps_run_at(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _one(broker, clock, tasks)
    run_at = lease.record.run_at

    assert await broker.settle(
        [outcome(OutcomeKind.RELEASED, lease, clock.advance(1))], clock.now()
    ) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.QUEUED
    assert record.attempt == 0
    assert record.run_at == run_at
    assert record.history == []
    assert record.lease_expires_at is None
    [again] = await broker.reserve("w", 5, 30.0, clock.now())
    assert again.record.attempt == 1


async def test_attempt_numbering_across_retries(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _one(broker, clock, tasks, max_attempts=5)
    seen = [lease.record.attempt]
    for step in range(3):
        now = clock.advance(1)
        kind = OutcomeKind.SNOOZE if step == 1 else OutcomeKind.RETRY
        assert await broker.settle([outcome(kind, lease, now, run_at=now + 10)], now) == [True]
        [lease] = await broker.reserve("w", 1, 30.0, clock.advance(10))
        seen.append(lease.record.attempt)
    final = outcome(OutcomeKind.SUCCEEDED, lease, clock.advance(1))
    await broker.settle([final], clock.now())

    # attempt 2 was snoozed, so it ran again as attempt 2
    assert seen == [1, 2, 2, 3]
    record = await _get(broker, lease.task_id)
    assert record.attempt == 3
    assert [(h.attempt, h.status) for h in record.history] == [
        (1, ResultStatus.FAILURE),
        (2, ResultStatus.FAILURE),
        (3, ResultStatus.SUCCESS),
    ]
    assert record.result is not None
    assert record.result.attempt == 3


async def test_mixed_batch_is_applied_item_by_item(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = tasks.many(6, now)
    await broker.enqueue(batch, now)
    leases = await broker.reserve("w", 6, 30.0, now)
    assert ids(leases) == [t.id for t in batch]
    now = clock.advance(1)
    kinds = [
        OutcomeKind.SUCCEEDED,
        OutcomeKind.RETRY,
        OutcomeKind.SNOOZE,
        OutcomeKind.DEAD,
        OutcomeKind.CANCELLED,
        OutcomeKind.RELEASED,
    ]
    outcomes = [
        outcome(k, lease, now, run_at=now + 5)
        if k in (OutcomeKind.RETRY, OutcomeKind.SNOOZE)
        else outcome(k, lease, now)
        for k, lease in zip(kinds, leases, strict=True)
    ]
    # a stale copy of the first outcome, after it: refused, the rest unaffected
    outcomes.insert(1, outcomes[0])

    results = await broker.settle(outcomes, now)

    assert results == [True, False, True, True, True, True, True]
    records = await broker.get(ids(leases))
    assert [(r.state, r.attempt) for r in records if r] == [
        (TaskState.SUCCEEDED, 1),
        (TaskState.QUEUED, 1),
        (TaskState.QUEUED, 0),
        (TaskState.DEAD, 1),
        (TaskState.CANCELLED, 1),
        (TaskState.QUEUED, 0),
    ]


async def test_settle_of_unknown_task_is_refused(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _one(broker, clock, tasks)
    ghost = replace(lease, record=replace(lease.record, id="01ARZ3NDEKTSV4RRFFQ69G5FAV"))

    assert await broker.settle(
        [outcome(OutcomeKind.SUCCEEDED, ghost, clock.now())], clock.now()
    ) == [False]


@pytest.mark.parametrize("kind", [OutcomeKind.RETRY, OutcomeKind.SNOOZE, OutcomeKind.RELEASED])
async def test_a_cancel_asked_while_running_wins_over_a_requeue(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks, kind: OutcomeKind
) -> None:
    """A run asked to cancel that ends as retry, snooze or released ends the task cancelled:
    it is never queued again, and its history says the cancel was honoured."""
    lease = await _one(broker, clock, tasks)
    assert await broker.cancel([lease.task_id], clock.advance(1)) == [CancelResult.REQUESTED]
    now = clock.advance(1)
    again_at = now + 5 if kind in (OutcomeKind.RETRY, OutcomeKind.SNOOZE) else None

    assert await broker.settle([outcome(kind, lease, now, run_at=again_at)], now) == [True]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.CANCELLED
    assert record.finished_at == now
    assert record.cancel_requested is False
    assert record.lease_expires_at is None
    assert record.result is not None
    assert record.result.status is ResultStatus.CANCELLED
    assert [(h.attempt, h.status) for h in record.history] == [(1, ResultStatus.CANCELLED)]
    assert CANCEL_HONOURED in (record.history[-1].error or "")
    assert await broker.reserve("w", 5, 30.0, clock.advance(3600)) == []
    assert await broker.extend([lease], 30.0, clock.now()) == [LeaseStatus.LOST]


async def test_a_finished_run_keeps_its_outcome_despite_a_cancel_request(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    """Success and dead outcomes stand: the run finished before the cancel could act."""
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)
    done, failed = await broker.reserve("w", 2, 30.0, now)
    await broker.cancel([done.task_id, failed.task_id], clock.advance(1))
    now = clock.advance(1)

    assert await broker.settle(
        [outcome(OutcomeKind.SUCCEEDED, done, now), outcome(OutcomeKind.DEAD, failed, now)], now
    ) == [True, True]

    records = await broker.get([done.task_id, failed.task_id])
    assert [r.state for r in records if r] == [TaskState.SUCCEEDED, TaskState.DEAD]
