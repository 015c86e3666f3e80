"""Conformance: dead letters and replay, cancel, listing, counts and purge."""

from __future__ import annotations

from taskengine.brokers import BrokerBackend, CancelResult, ReplayResult, TaskFilter
from taskengine.clock import FakeClock
from taskengine.model import Lease, OutcomeKind, Priority, TaskRecord, TaskState
from tests.brokers.support import Tasks, ids, make_id, outcome

UNKNOWN = make_id(1_600_000_000.0, 424242)


async def _settled(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks, kind: OutcomeKind, **kw: object
) -> Lease:
    now = clock.now()
    task = tasks(now, **kw)
    await broker.enqueue([task], now)
    [lease] = await broker.reserve("w", 1, 30.0, now, queues=[task.queue])
    assert lease.task_id == task.id
    assert await broker.settle([outcome(kind, lease, now)], now) == [True]
    return lease


async def _get(broker: BrokerBackend, task_id: str) -> TaskRecord:
    [record] = await broker.get([task_id])
    assert record is not None
    return record


async def test_replay_moves_dead_task_back_to_queued(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _settled(broker, clock, tasks, OutcomeKind.DEAD, delay=0.0)
    now = clock.advance(100)

    assert await broker.replay([lease.task_id], now) == [ReplayResult.REPLAYED]

    record = await _get(broker, lease.task_id)
    assert record.state is TaskState.QUEUED
    assert record.attempt == 0
    assert record.run_at == now
    [again] = await broker.reserve("w", 5, 30.0, now)
    assert again.task_id == lease.task_id
    assert again.record.attempt == 1
    # and replayable again once dead again
    await broker.settle([outcome(OutcomeKind.DEAD, again, now)], now)
    assert await broker.replay([lease.task_id], clock.advance(1)) == [ReplayResult.REPLAYED]
    assert (await _get(broker, lease.task_id)).state is TaskState.QUEUED


async def test_replay_of_cancelled_task(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    task = tasks(now)
    await broker.enqueue([task], now)
    await broker.cancel([task.id], now)

    assert await broker.replay([task.id], clock.advance(1)) == [ReplayResult.REPLAYED]
    assert ids(await broker.reserve("w", 5, 30.0, clock.now())) == [task.id]


async def test_replay_refuses_what_is_not_dead_or_cancelled(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    done = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)
    now = clock.now()
    queued, running = tasks(now), tasks(now)
    await broker.enqueue([running], now)
    await broker.reserve("w", 1, 30.0, now)
    await broker.enqueue([queued], now)

    results = await broker.replay([queued.id, done.task_id, running.id, UNKNOWN], now)

    assert results == [
        ReplayResult.NOT_REPLAYABLE,
        ReplayResult.NOT_REPLAYABLE,
        ReplayResult.NOT_REPLAYABLE,
        ReplayResult.NOT_FOUND,
    ]
    states = [r.state for r in await broker.get([queued.id, done.task_id, running.id]) if r]
    assert states == [TaskState.QUEUED, TaskState.SUCCEEDED, TaskState.RUNNING]


async def test_cancel_answers_by_state(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    done = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)
    dead = await _settled(broker, clock, tasks, OutcomeKind.DEAD)
    now = clock.now()
    running, queued, later = tasks(now), tasks(now), tasks(now, delay=600.0)
    await broker.enqueue([running], now)
    await broker.reserve("w", 1, 30.0, now)
    await broker.enqueue([queued, later], now)

    results = await broker.cancel(
        [queued.id, later.id, running.id, done.task_id, dead.task_id, UNKNOWN], clock.advance(1)
    )

    assert results == [
        CancelResult.CANCELLED,
        CancelResult.CANCELLED,
        CancelResult.REQUESTED,
        CancelResult.FINISHED,
        CancelResult.FINISHED,
        CancelResult.NOT_FOUND,
    ]
    records = await broker.get([queued.id, later.id, running.id, done.task_id, dead.task_id])
    assert [r.state for r in records if r] == [
        TaskState.CANCELLED,
        TaskState.CANCELLED,
        TaskState.RUNNING,
        TaskState.SUCCEEDED,
        TaskState.DEAD,
    ]
    assert all(r is not None and r.finished_at == clock.now() for r in records[:2])
    assert await broker.reserve("w", 5, 30.0, clock.advance(3600)) == []
    # a second cancel of the cancelled task: finished
    assert await broker.cancel([queued.id], clock.now()) == [CancelResult.FINISHED]


async def _populate(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> list[str]:
    """Twelve tasks over three creation times, two queues, two types, three priorities."""
    created: list[str] = []
    for i in range(12):
        now = clock.now()
        task = tasks(
            now,
            type="demo.a" if i % 2 else "demo.b",
            queue="q1" if i % 3 else "q2",
            priority=Priority(i % 3),
        )
        await broker.enqueue([task], now)
        created.append(task.id)
        if i % 4 == 3:
            clock.advance(10)
    return created


async def _all(broker: BrokerBackend, f: TaskFilter, limit: int = 1000) -> list[TaskRecord]:
    items: list[TaskRecord] = []
    cursor: str | None = None
    for _ in range(100):
        page = await broker.list_tasks(f, limit, cursor)
        assert len(page.items) <= limit
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def test_list_pages_newest_first_without_overlap(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    created = await _populate(broker, clock, tasks)

    first = await broker.list_tasks(TaskFilter(), 5)
    items = await _all(broker, TaskFilter(), limit=5)

    assert [r.id for r in first.items] == sorted(created, reverse=True)[:5]
    assert first.next_cursor is not None
    assert [r.id for r in items] == sorted(created, reverse=True)
    last = await broker.list_tasks(TaskFilter(), 100)
    assert last.next_cursor is None
    assert len(last.items) == 12


async def test_list_filters(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    start = clock.now()
    created = await _populate(broker, clock, tasks)
    now = clock.now()
    [lease] = await broker.reserve("w", 1, 30.0, now, queues=["q2"])
    await broker.settle([outcome(OutcomeKind.DEAD, lease, now)], now)
    records = {r.id: r for r in await broker.get(created) if r}

    async def check(f: TaskFilter, keep: object) -> None:
        expected = sorted((i for i, r in records.items() if keep(r)), reverse=True)  # type: ignore[operator]
        assert expected, f"filter {f} selects nothing: a useless check"
        assert [r.id for r in await _all(broker, f, limit=3)] == expected, f

    await check(TaskFilter(states=frozenset({TaskState.DEAD})), lambda r: r.id == lease.task_id)
    await check(
        TaskFilter(states=frozenset({TaskState.QUEUED})), lambda r: r.state is TaskState.QUEUED
    )
    await check(TaskFilter(types=frozenset({"demo.a"})), lambda r: r.type == "demo.a")
    await check(TaskFilter(queues=frozenset({"q2"})), lambda r: r.queue == "q2")
    await check(
        TaskFilter(priorities=frozenset({Priority.HIGH, Priority.LOW})),
        lambda r: r.priority != Priority.NORMAL,
    )
    await check(TaskFilter(created_after=start + 10), lambda r: r.created_at >= start + 10)
    await check(TaskFilter(created_before=start + 10), lambda r: r.created_at < start + 10)
    await check(
        TaskFilter(
            created_after=start + 10,
            created_before=start + 20,
            queues=frozenset({"q1"}),
            types=frozenset({"demo.b"}),
        ),
        lambda r: r.created_at == start + 10 and r.queue == "q1" and r.type == "demo.b",
    )
    assert (await broker.list_tasks(TaskFilter(types=frozenset({"nope"})), 10)).items == []


async def test_counts(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    t0 = clock.now()
    await broker.enqueue([tasks(t0, queue="a"), tasks(t0, queue="a", priority="high")], t0)
    t1 = clock.advance(5)
    await broker.enqueue([tasks(t1, queue="a"), tasks(t1, queue="b")], t1)
    [_lease] = await broker.reserve("w", 1, 30.0, t1, queues=["b"])

    rows = await broker.counts()

    got = sorted((r.queue, r.state, r.priority, r.count, r.oldest_created_at) for r in rows)
    assert got == sorted(
        [
            ("a", TaskState.QUEUED, Priority.NORMAL, 2, t0),
            ("a", TaskState.QUEUED, Priority.HIGH, 1, t0),
            ("b", TaskState.RUNNING, Priority.NORMAL, 1, None),
        ]
    )


async def test_counts_of_empty_broker(broker: BrokerBackend) -> None:
    assert await broker.counts() == []


async def test_purge_only_given_states_finished_before_cutoff(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    old_ok = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)
    old_dead = await _settled(broker, clock, tasks, OutcomeKind.DEAD)
    old_cancelled = await _settled(broker, clock, tasks, OutcomeKind.CANCELLED)
    now = clock.now()
    queued = tasks(now, queue="kept")
    await broker.enqueue([queued], now)
    cutoff = clock.advance(100)
    new_ok = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)

    purged = await broker.purge([TaskState.SUCCEEDED, TaskState.DEAD], cutoff, 100)

    assert purged == 2
    records = await broker.get(
        [old_ok.task_id, old_dead.task_id, old_cancelled.task_id, queued.id, new_ok.task_id]
    )
    assert [r.state if r else None for r in records] == [
        None,
        None,
        TaskState.CANCELLED,
        TaskState.QUEUED,
        TaskState.SUCCEEDED,
    ]
    listed = {r.id for r in await _all(broker, TaskFilter())}
    assert old_ok.task_id not in listed
    assert old_dead.task_id not in listed
    counted = sum(r.count for r in await broker.counts())
    assert counted == 3


async def test_purge_honours_limit(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    done = [await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED) for _ in range(5)]
    cutoff = clock.advance(1)

    assert await broker.purge([TaskState.SUCCEEDED], cutoff, 2) == 2
    assert await broker.purge([TaskState.SUCCEEDED], cutoff, 2) == 2
    assert await broker.purge([TaskState.SUCCEEDED], cutoff, 2) == 1
    assert await broker.purge([TaskState.SUCCEEDED], cutoff, 2) == 0
    assert await broker.get(ids(done)) == [None] * 5


async def test_purged_idempotency_key_can_be_used_again(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    lease = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED, idempotency_key="k")
    assert await broker.purge([TaskState.SUCCEEDED], clock.advance(1), 10) == 1
    now = clock.now()
    fresh = tasks(now, idempotency_key="k")

    [result] = await broker.enqueue([fresh], now)

    assert result.created
    assert result.id == fresh.id != lease.task_id


async def test_delete_removes_finished_tasks_by_id_and_nothing_else(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    done = await _settled(broker, clock, tasks, OutcomeKind.SUCCEEDED)
    dead = await _settled(broker, clock, tasks, OutcomeKind.DEAD, delay=0.0)
    now = clock.now()
    queued = tasks(now, idempotency_key="kept-key")
    cancelled = tasks(now, idempotency_key="freed-key")
    await broker.enqueue([queued, cancelled], now)
    await broker.cancel([cancelled.id], now)
    ids = [done.task_id, dead.task_id, queued.id, cancelled.id, UNKNOWN]

    assert await broker.delete(ids) == [True, True, False, True, False]

    assert [r is None for r in await broker.get(ids)] == [True, True, False, True, True]
    counted = {(row.state, row.count) for row in await broker.counts()}
    assert counted == {(TaskState.QUEUED, 1)}
    again = tasks(clock.advance(1), idempotency_key="freed-key")  # the key is free again
    [result] = await broker.enqueue([again], clock.now())
    assert result.created
