"""Conformance: dependencies (depends_on). A task waits `blocked` until its parents succeed,
is queued in the same call as the last parent's settle, and is cancelled (or run anyway) when
a parent ends dead or cancelled (model.deps, ADR 0037)."""

from __future__ import annotations

import pytest

from taskengine.brokers import BrokerBackend, CancelResult, ReplayResult, TaskFilter
from taskengine.clock import FakeClock
from taskengine.errors import UnknownParent
from taskengine.model import Lease, OutcomeKind, ResultStatus, Task, TaskRecord, TaskState
from taskengine.model.deps import PARENT_FAILED
from tests.brokers.support import Tasks, ids, make_id, outcome

UNKNOWN = make_id(1_600_000_000.0, 424242)


async def _get(broker: BrokerBackend, task_id: str) -> TaskRecord:
    [record] = await broker.get([task_id])
    assert record is not None
    return record


async def _states(broker: BrokerBackend, *tasks: Task) -> list[TaskState]:
    records = await broker.get([t.id for t in tasks])
    return [r.state if r is not None else TaskState.DEAD for r in records]


async def _run(
    broker: BrokerBackend, clock: FakeClock, task: Task, kind: OutcomeKind, **kw: object
) -> Lease:
    """Reserve `task` (it must be the only one ready) and settle it as `kind`."""
    now = clock.now()
    leases = await broker.reserve("w", 10, 30.0, now)
    assert ids(leases) == [task.id]
    assert await broker.settle([outcome(kind, leases[0], now, **kw)], now) == [True]  # type: ignore[arg-type]
    return leases[0]


async def test_a_dependent_waits_blocked_and_is_queued_when_its_parent_succeeds(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id])
    assert [r.created for r in await broker.enqueue([parent, child], now)] == [True, True]

    record = await _get(broker, child.id)
    assert record.state is TaskState.BLOCKED
    assert record.depends_on == (parent.id,)
    assert record.waiting == 1
    await _run(broker, clock, parent, OutcomeKind.SUCCEEDED)

    assert await _states(broker, child) == [TaskState.QUEUED]
    [lease] = await broker.reserve("w", 10, 30.0, clock.now())
    assert lease.task_id == child.id
    assert lease.record.attempt == 1


async def test_a_dependent_of_many_is_queued_only_after_the_last(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    a, b = tasks(now), tasks(now)
    await broker.enqueue([a, b], now)
    child = tasks(now, depends_on=[a.id, b.id])
    await broker.enqueue([child], now)
    [la, lb] = await broker.reserve("w", 10, 30.0, now)

    assert await broker.settle([outcome(OutcomeKind.SUCCEEDED, la, now)], now) == [True]
    record = await _get(broker, child.id)
    assert (record.state, record.waiting) == (TaskState.BLOCKED, 1)
    assert await broker.reserve("w", 10, 30.0, clock.advance(1)) == []

    assert await broker.settle([outcome(OutcomeKind.SUCCEEDED, lb, now)], clock.now()) == [True]
    assert ids(await broker.reserve("w", 10, 30.0, clock.now())) == [child.id]


async def test_parents_settled_in_one_batch_queue_their_child_once(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    group = tasks.many(5, now)
    callback = tasks(now, depends_on=[t.id for t in group])
    await broker.enqueue([*group, callback], now)
    leases = await broker.reserve("w", 10, 30.0, now)
    assert sorted(ids(leases)) == sorted(t.id for t in group)

    done = [outcome(OutcomeKind.SUCCEEDED, lease, now, data=i) for i, lease in enumerate(leases)]
    assert await broker.settle(done, clock.advance(1)) == [True] * 5

    assert ids(await broker.reserve("w", 10, 30.0, clock.now())) == [callback.id]
    assert await broker.reserve("w", 10, 30.0, clock.now()) == []


async def test_a_parent_that_already_succeeded_does_not_block(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    await broker.enqueue([parent], now)
    await _run(broker, clock, parent, OutcomeKind.SUCCEEDED)
    child = tasks(clock.advance(1), depends_on=[parent.id])

    await broker.enqueue([child], clock.now())

    assert await _states(broker, child) == [TaskState.QUEUED]
    assert ids(await broker.reserve("w", 10, 30.0, clock.now())) == [child.id]


async def test_an_unknown_parent_refuses_the_whole_batch(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    fine = tasks(now)
    orphan = tasks(now, depends_on=[UNKNOWN])

    with pytest.raises(UnknownParent) as caught:
        await broker.enqueue([fine, orphan], now)

    assert caught.value.missing == [UNKNOWN]
    assert await broker.get([fine.id, orphan.id]) == [None, None]


async def test_a_parent_later_in_the_batch_is_unknown(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id])

    with pytest.raises(UnknownParent):
        await broker.enqueue([child, parent], now)
    assert await broker.get([parent.id, child.id]) == [None, None]


async def test_a_dead_parent_cancels_its_dependents_down_the_graph(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id])
    grandchild = tasks(now, depends_on=[child.id])
    await broker.enqueue([parent, child, grandchild], now)

    await _run(broker, clock, parent, OutcomeKind.DEAD)

    assert await _states(broker, child, grandchild) == [TaskState.CANCELLED] * 2
    record = await _get(broker, child.id)
    assert record.result is not None
    assert record.result.status is ResultStatus.CANCELLED
    assert record.result.error is not None
    assert record.result.error.startswith(PARENT_FAILED)
    assert parent.id in record.result.error
    assert record.finished_at == clock.now()
    deeper = await _get(broker, grandchild.id)
    assert deeper.result is not None and deeper.result.error is not None
    assert child.id in deeper.result.error
    assert await broker.reserve("w", 10, 30.0, clock.advance(1)) == []


async def test_run_anyway_queues_the_dependent_after_a_failed_parent(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id], on_parent_failure="run")
    await broker.enqueue([parent, child], now)

    await _run(broker, clock, parent, OutcomeKind.DEAD)

    assert ids(await broker.reserve("w", 10, 30.0, clock.now())) == [child.id]


async def test_a_parent_already_failed_at_submit_cancels_the_dependent_at_once(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    await broker.enqueue([parent], now)
    await broker.cancel([parent.id], now)
    child = tasks(clock.advance(1), depends_on=[parent.id])
    anyway = tasks(clock.now(), depends_on=[parent.id], on_parent_failure="run")

    await broker.enqueue([child, anyway], clock.now())

    assert await _states(broker, child, anyway) == [TaskState.CANCELLED, TaskState.QUEUED]
    record = await _get(broker, child.id)
    assert record.result is not None and record.result.error is not None
    assert record.result.error.startswith(PARENT_FAILED)


async def test_cancelling_a_parent_or_a_blocked_task_cancels_what_waits_on_it(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now, delay=60.0)
    child = tasks(now, depends_on=[parent.id])
    other = tasks(now, delay=60.0)
    blocked = tasks(now, depends_on=[other.id])
    below = tasks(now, depends_on=[blocked.id])
    await broker.enqueue([parent, child, other, blocked, below], now)

    assert await broker.cancel([parent.id, blocked.id], now) == [CancelResult.CANCELLED] * 2

    assert await _states(broker, child, blocked, below, other) == [
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.QUEUED,
    ]
    # the parent that stays queued no longer releases the cancelled task
    [lease] = await broker.reserve("w", 10, 30.0, clock.advance(60))
    assert lease.task_id == other.id
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, clock.now())], clock.now())
    assert await _states(broker, blocked) == [TaskState.CANCELLED]
    assert await broker.reserve("w", 10, 30.0, clock.now()) == []


async def test_a_lease_expiring_on_the_last_attempt_cancels_the_dependents(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now, max_attempts=1)
    child = tasks(now, depends_on=[parent.id])
    await broker.enqueue([parent, child], now)
    await broker.reserve("w", 10, 30.0, now)

    assert await broker.requeue_expired(clock.advance(31), 10) == [parent.id]

    assert await _states(broker, parent, child) == [TaskState.DEAD, TaskState.CANCELLED]


async def test_replaying_a_workflow_in_order_blocks_the_dependent_again(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id])
    await broker.enqueue([parent, child], now)
    await _run(broker, clock, parent, OutcomeKind.DEAD)
    # alone, the child would be cancelled again: its parent is still dead
    assert await broker.replay([child.id], clock.now()) == [ReplayResult.NOT_REPLAYABLE]

    assert (
        await broker.replay([parent.id, child.id], clock.advance(1)) == [ReplayResult.REPLAYED] * 2
    )

    record = await _get(broker, child.id)
    assert (record.state, record.waiting, record.attempt) == (TaskState.BLOCKED, 1, 0)
    await _run(broker, clock, parent, OutcomeKind.SUCCEEDED)
    assert ids(await broker.reserve("w", 10, 30.0, clock.now())) == [child.id]


async def test_blocked_tasks_are_counted_and_listed(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    children = [tasks(now, depends_on=[parent.id]) for _ in range(3)]
    await broker.enqueue([parent, *children], now)

    rows = {(r.state, r.count) for r in await broker.counts()}
    assert (TaskState.BLOCKED, 3) in rows
    assert (TaskState.QUEUED, 1) in rows
    page = await broker.list_tasks(TaskFilter(states=frozenset({TaskState.BLOCKED})), 10)
    assert [r.id for r in page.items] == sorted((c.id for c in children), reverse=True)

    await _run(broker, clock, parent, OutcomeKind.SUCCEEDED)
    rows = {(r.state, r.count) for r in await broker.counts()}
    assert (TaskState.QUEUED, 3) in rows
    assert all(r.state is not TaskState.BLOCKED or r.count == 0 for r in await broker.counts())


async def test_a_retried_parent_keeps_its_dependents_blocked(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now)
    child = tasks(now, depends_on=[parent.id])
    await broker.enqueue([parent, child], now)

    await _run(broker, clock, parent, OutcomeKind.RETRY, run_at=now)

    assert await _states(broker, parent, child) == [TaskState.QUEUED, TaskState.BLOCKED]
    await _run(broker, clock, parent, OutcomeKind.SUCCEEDED)
    assert await _states(broker, child) == [TaskState.QUEUED]


async def test_the_workflow_id_is_kept(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    workflow = make_id(now, 999_999)
    parent = tasks(now, workflow=workflow)
    child = tasks(now, depends_on=[parent.id], workflow=workflow, on_parent_failure="run")
    await broker.enqueue([parent, child], now)

    records = await broker.get([parent.id, child.id])
    assert [r.workflow for r in records if r is not None] == [workflow, workflow]
    assert [r.on_parent_failure for r in records if r is not None] == ["cancel", "run"]
    page = await broker.list_tasks(TaskFilter(workflow=workflow), 10)
    assert [r.id for r in page.items] == [child.id, parent.id]


async def test_a_dependent_named_with_its_parent_is_cancelled_as_asked(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now, delay=60.0)
    child = tasks(now, depends_on=[parent.id])
    below = tasks(now, depends_on=[child.id])
    await broker.enqueue([parent, child, below], now)

    answers = await broker.cancel([parent.id, child.id], clock.advance(1))

    assert answers == [CancelResult.CANCELLED, CancelResult.CANCELLED]
    records = await broker.get([child.id, below.id])
    errors = [r.result.error if r and r.result else None for r in records]
    assert errors[0] is not None and not errors[0].startswith(PARENT_FAILED)
    assert errors[1] is not None and errors[1].startswith(PARENT_FAILED)
    assert child.id in errors[1]


async def test_a_parent_deleted_as_it_succeeds_still_releases_its_dependent(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    parent = tasks(now, keep_result=0.0)
    child = tasks(now, depends_on=[parent.id])
    await broker.enqueue([parent, child], now)
    await _run(broker, clock, parent, OutcomeKind.SUCCEEDED)

    assert await broker.get([parent.id]) == [None]  # keep_result 0: gone with its settle
    assert await _states(broker, child) == [TaskState.QUEUED]


async def _blamed(broker: BrokerBackend, task: Task) -> str:
    """The parent id the cancelled dependent's error names."""
    record = await _get(broker, task.id)
    assert record.state is TaskState.CANCELLED
    assert record.result is not None and record.result.error is not None
    return record.result.error.rsplit(": ", 1)[1]


async def test_two_parents_failed_in_one_settle_name_the_smallest_id(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    low, high = sorted((tasks(now), tasks(now)), key=lambda t: t.id)
    child = tasks(now, depends_on=[high.id, low.id])
    await broker.enqueue([low, high, child], now)
    leases = {lease.task_id: lease for lease in await broker.reserve("w", 10, 30.0, now)}

    batch = [
        outcome(OutcomeKind.DEAD, leases[high.id], now),
        outcome(OutcomeKind.DEAD, leases[low.id], now),
    ]
    assert await broker.settle(batch, now) == [True, True]

    assert await _blamed(broker, child) == low.id  # model.deps.blame, whatever the order


async def test_two_parents_cancelled_in_one_call_name_the_smallest_id(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    low, high = sorted((tasks(now), tasks(now)), key=lambda t: t.id)
    child = tasks(now, depends_on=[low.id, high.id])
    grandchild = tasks(now, depends_on=[child.id])
    await broker.enqueue([low, high, child, grandchild], now)

    assert await broker.cancel([high.id, low.id], now) == [CancelResult.CANCELLED] * 2

    assert await _blamed(broker, child) == low.id
    assert await _blamed(broker, grandchild) == child.id
