"""Conformance: unique locks (unique_for, unique_while) answer a repeat with the holder."""

from __future__ import annotations

from taskengine.brokers import BrokerBackend
from taskengine.clock import FakeClock
from taskengine.model import OutcomeKind
from taskengine.model.unique import UniqueLock, UniqueWhile
from tests.brokers.support import Tasks, outcome


def for_seconds(seconds: float, key: str = "k") -> UniqueLock:
    return UniqueLock(key=key, seconds=seconds)


def while_(state: UniqueWhile, key: str = "k") -> UniqueLock:
    return UniqueLock(key=key, states=state.states)


async def test_unique_for_answers_a_repeat_with_the_holder_until_it_runs_out(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    first, repeat, later = tasks(now), tasks(now + 1), tasks(now + 61)

    [a] = await broker.enqueue([first], now, [for_seconds(60)])
    [b] = await broker.enqueue([repeat], now + 1, [for_seconds(60)])
    [c] = await broker.enqueue([later], now + 61, [for_seconds(60)])

    assert (a.id, a.created) == (first.id, True)
    assert (b.id, b.created) == (first.id, False)
    assert await broker.get([repeat.id]) == [None]
    assert (c.id, c.created) == (later.id, True)


async def test_unique_while_queued_frees_the_key_once_the_holder_runs(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    first, repeat, after = tasks(now), tasks(now), tasks(now)
    lock = while_(UniqueWhile.QUEUED)
    await broker.enqueue([first], now, [lock])
    assert (await broker.enqueue([repeat], now, [lock]))[0].id == first.id

    await broker.reserve("w", 1, 30.0, now)

    [result] = await broker.enqueue([after], now, [lock])
    assert (result.id, result.created) == (after.id, True)


async def test_unique_while_running_holds_until_the_holder_finishes(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    first, during, after = tasks(now), tasks(now), tasks(now)
    lock = while_(UniqueWhile.RUNNING)
    await broker.enqueue([first], now, [lock])
    [lease] = await broker.reserve("w", 1, 30.0, now)

    assert (await broker.enqueue([during], now, [lock]))[0].id == first.id
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, now)], now)

    [result] = await broker.enqueue([after], now, [lock])
    assert (result.id, result.created) == (after.id, True)


async def test_a_repeat_in_the_same_batch_answers_the_first(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = tasks.many(3, now)
    locks = [for_seconds(60), for_seconds(60), for_seconds(60, key="other")]

    results = await broker.enqueue(batch, now, locks)

    assert [(r.id, r.created) for r in results] == [
        (batch[0].id, True),
        (batch[0].id, False),
        (batch[2].id, True),
    ]
    assert [r is None for r in await broker.get([t.id for t in batch])] == [False, True, False]


async def test_tasks_without_a_lock_are_not_affected(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    batch = tasks.many(2, now)

    results = await broker.enqueue(batch, now, [for_seconds(60), None])

    assert all(r.created for r in results)
