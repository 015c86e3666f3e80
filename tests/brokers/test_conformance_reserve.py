"""Conformance: reserve takes due tasks by priority without starvation, once each."""

from __future__ import annotations

import asyncio

import pytest

from taskengine.brokers import BrokerBackend
from taskengine.clock import FakeClock
from taskengine.errors import ValidationError
from taskengine.model import Lease, OutcomeKind, Priority, TaskState
from taskengine.model.priority import HEAD_START, STARVATION_BOUND
from tests.brokers.support import Tasks, ids, outcome


async def test_reserve_claims_under_a_lease(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    task = tasks(now)
    await broker.enqueue([task], now)

    [lease] = await broker.reserve("worker-1", 5, 30.0, now)

    assert lease.task_id == task.id
    assert lease.token
    assert lease.expires_at == now + 30.0
    assert lease.record.state is TaskState.RUNNING
    assert lease.record.attempt == 1
    assert lease.record.worker_id == "worker-1"
    [record] = await broker.get([task.id])
    assert record is not None
    assert record.state is TaskState.RUNNING
    assert record.attempt == 1
    assert record.worker_id == "worker-1"
    assert record.lease_expires_at == now + 30.0
    assert await broker.reserve("worker-2", 5, 30.0, now) == []


async def test_reserve_honours_limit(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(5, now), now)

    assert len(await broker.reserve("w", 2, 30.0, now)) == 2
    assert len(await broker.reserve("w", 2, 30.0, now)) == 2
    assert len(await broker.reserve("w", 2, 30.0, now)) == 1
    assert await broker.reserve("w", 2, 30.0, now) == []


async def test_tokens_are_unique(broker: BrokerBackend, clock: FakeClock, tasks: Tasks) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(10, now), now)

    leases = await broker.reserve("w", 10, 30.0, now)

    assert len({lease.token for lease in leases}) == 10


@pytest.mark.parametrize(("limit", "lease_for"), [(0, 30.0), (-1, 30.0), (1, 0.0), (1, -5.0)])
async def test_reserve_rejects_bad_arguments(
    broker: BrokerBackend, clock: FakeClock, limit: int, lease_for: float
) -> None:
    with pytest.raises(ValidationError):
        await broker.reserve("w", limit, lease_for, clock.now())


async def test_high_before_normal_before_low(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    low = tasks(now, priority=Priority.LOW)
    normal = tasks(now, priority=Priority.NORMAL)
    high = tasks(now, priority=Priority.HIGH)
    await broker.enqueue([low, normal, high], now)

    taken = [ids(await broker.reserve("w", 1, 30.0, now)) for _ in range(3)]

    assert taken == [[high.id], [normal.id], [low.id]]


async def test_one_batch_is_returned_in_priority_order(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = [tasks(now, priority=p) for p in (Priority.LOW, Priority.NORMAL, Priority.HIGH) * 2]
    await broker.enqueue(batch, now)

    leases = await broker.reserve("w", 6, 30.0, now)

    assert [lease.record.priority for lease in leases] == [Priority.HIGH] * 2 + [
        Priority.NORMAL
    ] * 2 + [Priority.LOW] * 2
    # Within one tier, the earlier id first.
    assert ids(leases) == [
        batch[2].id,
        batch[5].id,
        batch[1].id,
        batch[4].id,
        batch[0].id,
        batch[3].id,
    ]


async def test_same_priority_earlier_run_at_first(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    late = tasks(now, run_at=now + 20)
    early = tasks(now, run_at=now + 10)
    await broker.enqueue([late, early], now)

    leases = await broker.reserve("w", 1, 30.0, clock.advance(20))

    assert ids(leases) == [early.id]


async def test_a_task_queued_by_a_clock_ahead_is_taken_when_due_not_before(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    """Producers and workers read different clocks: a task due by the producer's clock but
    not yet by the reserving one's is not taken before it is due by that clock (whichever
    index the broker put it in when queued), and is then taken once, never dropped."""
    now = clock.now()
    ahead = now + 100
    task = tasks(ahead, run_at=now + 60)  # in the producer's past, the worker's future
    await broker.enqueue([task], ahead)  # due at its creation, the later (now + 100)

    early = await broker.reserve("w", 5, 30.0, clock.advance(59))
    due = await broker.reserve("w", 5, 30.0, clock.advance(41))

    assert early == []
    assert ids(due) == [task.id]


async def test_low_task_not_starved_by_fresh_high_tasks(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    """A LOW task due at t is taken before HIGH tasks that became due after t + bound."""
    t = clock.now()
    low = tasks(t, priority=Priority.LOW)
    fresh_high = [
        tasks(t, priority=Priority.HIGH, run_at=t + STARVATION_BOUND + d) for d in (0.5, 1.0, 30.0)
    ]
    await broker.enqueue([*fresh_high, low], t)

    leases = await broker.reserve("w", 1, 30.0, clock.advance(STARVATION_BOUND + 60))

    assert ids(leases) == [low.id]


async def test_high_tasks_due_within_the_bound_go_first(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    """HIGH tasks due before t + bound still overtake a LOW task due at t."""
    t = clock.now()
    low = tasks(t, priority=Priority.LOW)
    high = [tasks(t, priority=Priority.HIGH, run_at=t + STARVATION_BOUND - d) for d in (0.5, 30.0)]
    await broker.enqueue([low, *high], t)

    leases = await broker.reserve("w", 3, 30.0, clock.advance(STARVATION_BOUND))

    assert ids(leases) == [high[1].id, high[0].id, low.id]


async def test_normal_head_start_over_low(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    gap = HEAD_START[Priority.NORMAL] - HEAD_START[Priority.LOW]
    t = clock.now()
    low = tasks(t, priority=Priority.LOW)
    normal_before = tasks(t, priority=Priority.NORMAL, run_at=t + gap - 1)
    normal_after = tasks(t, priority=Priority.NORMAL, run_at=t + gap + 1)
    await broker.enqueue([normal_after, low, normal_before], t)

    leases = await broker.reserve("w", 3, 30.0, clock.advance(gap + 1))

    assert ids(leases) == [normal_before.id, low.id, normal_after.id]


async def test_concurrent_reservers_never_double_claim(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = tasks.many(120, now)
    await broker.enqueue(batch, now)

    async def reserver(name: str) -> list[Lease]:
        taken: list[Lease] = []
        while leases := await broker.reserve(name, 3, 30.0, now):
            taken.extend(leases)
        return taken

    results = await asyncio.gather(*(reserver(f"w{i}") for i in range(16)))

    claimed = [lease.task_id for leases in results for lease in leases]
    assert len(claimed) == len(set(claimed)), "a task was claimed twice"
    assert set(claimed) == {t.id for t in batch}


async def test_reserve_only_from_given_queues(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    a = tasks(now, queue="a")
    b = tasks(now, queue="b", priority=Priority.HIGH)
    c = tasks(now, queue="c")
    await broker.enqueue([a, b, c], now)

    assert ids(await broker.reserve("w", 5, 30.0, now, queues=["a"])) == [a.id]
    assert ids(await broker.reserve("w", 5, 30.0, now, queues=["a", "c"])) == [c.id]
    assert ids(await broker.reserve("w", 5, 30.0, now)) == [b.id]


async def test_paused_queue_is_not_reserved(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    mail = tasks(now, queue="mail", priority=Priority.HIGH)
    other = tasks(now, queue="default")
    await broker.enqueue([mail, other], now)

    await broker.pause(["mail"])

    assert await broker.paused() == {"mail"}
    assert ids(await broker.reserve("w", 5, 30.0, now)) == [other.id]
    assert await broker.reserve("w", 5, 30.0, now, queues=["mail"]) == []

    await broker.resume(["mail"])

    assert await broker.paused() == set()
    assert ids(await broker.reserve("w", 5, 30.0, now)) == [mail.id]


async def test_pause_and_resume_are_idempotent(broker: BrokerBackend) -> None:
    await broker.pause(["a", "b"])
    await broker.pause(["a"])
    assert await broker.paused() == {"a", "b"}
    await broker.resume(["a", "unknown"])
    await broker.resume(["a"])
    assert await broker.paused() == {"b"}


async def test_enqueue_into_paused_queue_waits_for_resume(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    await broker.pause(["mail"])
    now = clock.now()
    task = tasks(now, queue="mail")
    await broker.enqueue([task], now)

    assert await broker.reserve("w", 5, 30.0, now) == []
    await broker.resume(["mail"])
    assert ids(await broker.reserve("w", 5, 30.0, now)) == [task.id]


async def test_a_lease_carries_the_stored_record(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    task = tasks(clock.now(), max_attempts=3)
    await broker.enqueue([task], clock.now())
    [first] = await broker.reserve("worker-1", 1, 30.0, clock.advance(1))
    retry = outcome(OutcomeKind.RETRY, first, clock.advance(1), run_at=clock.now())
    assert await broker.settle([retry], clock.now()) == [True]

    [second] = await broker.reserve("worker-2", 1, 30.0, clock.advance(1))

    # the second run sees the first one's history and result, as `get` does
    assert await broker.get([task.id]) == [second.record]
    assert second.record.attempt == 2
    assert [h.attempt for h in second.record.history] == [1]
    assert second.record.result is not None
    assert second.record.result.attempt == 1


@pytest.mark.parametrize("run_at", [0.0, 1_577_836_800.0], ids=["epoch", "2020"])
async def test_a_backdated_run_at_gains_no_place(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks, run_at: float
) -> None:
    """The order key counts from the later of run_at and creation: a LOW task submitted with
    a run_at long past, after 20 HIGH tasks, still runs after all of them."""
    now = clock.now()
    high = tasks.many(20, now, priority=Priority.HIGH)
    await broker.enqueue(high, now)
    now = clock.advance(1)
    low = tasks(now, priority=Priority.LOW, run_at=run_at)
    await broker.enqueue([low], now)

    taken = [ids(await broker.reserve("w", 1, 30.0, clock.advance(1))) for _ in range(22)]

    assert taken == [[t.id] for t in high] + [[low.id], []]


async def test_a_backdated_task_handed_back_gains_no_place(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    """A released task keeps its run_at; its key still counts from its creation."""
    now = clock.now()
    low = tasks(now, priority=Priority.LOW, run_at=0.0)
    await broker.enqueue([low], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    now = clock.advance(1)
    high = tasks(now, priority=Priority.HIGH)
    await broker.enqueue([high], now)
    assert await broker.settle([outcome(OutcomeKind.RELEASED, lease, now)], now) == [True]

    assert ids(await broker.reserve("w", 2, 30.0, clock.advance(1))) == [high.id, low.id]


async def test_a_task_created_ahead_of_the_broker_and_meant_for_now_runs_now(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    """A task built by a producer whose clock is ahead of the one the broker goes by, to run
    at once, is recorded as created when it was received, so it runs at once and keeps its
    place; a task it delayed keeps its run_at."""
    now = clock.now()
    earlier = tasks(now)
    ahead = tasks(now + 100)
    delayed = tasks(now + 100, delay=10.0)
    await broker.enqueue([earlier], now)
    await broker.enqueue([ahead, delayed], clock.advance(1))

    assert ids(await broker.reserve("w", 5, 30.0, clock.now())) == [earlier.id, ahead.id]
    [record] = await broker.get([ahead.id])
    assert record is not None
    assert (record.created_at, record.run_at) == (clock.now(), clock.now())
    assert await broker.reserve("w", 5, 30.0, clock.advance(108)) == []
    assert ids(await broker.reserve("w", 5, 30.0, clock.advance(1))) == [delayed.id]
