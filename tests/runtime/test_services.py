"""The worker's background duties, driven one round at a time on a fake clock: heartbeat and
lease extension, lost leases and fencing, the reaper, retention, the autoscaler and the
completer's batching and retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from taskengine.app import App
from taskengine.brokers.base import BrokerBackend
from taskengine.clock import FakeClock
from taskengine.errors import BrokerUnavailable
from taskengine.model import ResultStatus, TaskResult, TaskState
from taskengine.model import outcome as outcomes
from taskengine.runtime import reaper as reaper_module
from taskengine.runtime import retention as retention_module
from taskengine.runtime.completer import Completer
from taskengine.runtime.engine import Engine
from tests.runtime.apps import BOARD, FlakyBroker, build_app, finished, wait_for

LEASE = 30.0


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def app(clock: FakeClock) -> AsyncIterator[App]:
    # Background loops wait real seconds between rounds: long enough that only the first
    # round (at start) and the rounds the test drives ever run.
    app = build_app(
        clock=clock, lease_for=LEASE, heartbeat_every=10, reaper_every=60, retention_every=600
    )
    await app.start()
    yield app
    await app.close()


def make_worker(
    app: App, *, broker: Any = None, instance: str | None = None, **changes: Any
) -> Engine:
    settings = app.settings.with_changes(**changes) if changes else app.settings
    backend: BrokerBackend = broker if broker is not None else app.broker
    return Engine(backend, app.registry, settings, clock=app.clock, instance=instance)


@asynccontextmanager
async def running(worker: Engine) -> AsyncIterator[Engine]:
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(grace=0)


async def expires_at(app: App, task_id: str) -> float | None:
    return (await app.get(task_id)).lease_expires_at


# -- heartbeat ----------------------------------------------------------------------------------


async def test_a_failing_duty_backs_off_but_the_heartbeat_keeps_its_beat(app: App) -> None:
    worker = make_worker(app)
    for service in (worker.reaper, worker.heartbeat):
        service.failures = 5  # a broker outage: five rounds in a row failed
    assert worker.reaper.next_delay() == 8 * worker.reaper.interval
    # A late heartbeat would let every running lease expire once the broker is back.
    assert worker.heartbeat.next_delay() == worker.heartbeat.interval == 10


async def test_the_heartbeat_extends_running_and_buffered_leases(
    app: App, clock: FakeClock
) -> None:
    running_id = await app.submit("gate", {"key": "run"})
    clock.advance(0.01)
    buffered_id = await app.submit("gate", {"key": "buf"})
    async with running(make_worker(app, workers=1, prefetch=1)) as worker:
        await asyncio.wait_for(BOARD.started("run").wait(), 5)
        await wait_for(lambda: len(worker.pool.held) == 2, what="both leases")
        assert await expires_at(app, running_id) == clock.now() + LEASE
        for step in (20, 20, 20):  # a minute in all: twice the lease
            clock.advance(step)
            await worker.heartbeat_once()
            assert await expires_at(app, running_id) == clock.now() + LEASE
            assert await expires_at(app, buffered_id) == clock.now() + LEASE
        # Nobody else could take them: the reaper finds nothing expired.
        assert await app.broker.requeue_expired(clock.now(), 10) == []
        BOARD.release("run").set()
        BOARD.release("buf").set()
        records = await finished(app, [running_id, buffered_id])
    assert [(r.state, r.attempt) for r in records] == [(TaskState.SUCCEEDED, 1)] * 2


async def test_a_lost_lease_interrupts_the_run_and_the_new_attempt_stands(
    app: App, clock: FakeClock
) -> None:
    task_id = await app.submit("gate", {"key": "k", "result": "first"})
    async with running(make_worker(app, instance="one")) as worker:
        await asyncio.wait_for(BOARD.started("k").wait(), 5)
        await worker.fetcher.stop()  # this instance takes nothing more
        # This instance misses its heartbeats: the lease runs out and another instance's
        # reaper hands the task to someone else.
        clock.advance(LEASE + 1)
        assert await app.broker.requeue_expired(clock.now(), 10) == [task_id]
        [lease] = await app.broker.reserve("two/w1", 1, LEASE, clock.now())
        assert lease.record.attempt == 2
        # The next heartbeat learns the lease is lost and stops the run; nothing is settled.
        await worker.heartbeat_once()
        await wait_for(lambda: not worker.pool.held, what="the run to stop")
        assert BOARD.events("cancelled") == [("k", 1)]
        assert BOARD.events("finish") == []
        assert worker.completer.pending == 0
        assert (worker.completer.settled, worker.completer.refused) == (0, 0)
        record = await app.get(task_id)
        assert (record.state, record.worker_id) == (TaskState.RUNNING, "two/w1")
        # The other instance's result is the one that stands.
        result = TaskResult(
            task_id=task_id, status=ResultStatus.SUCCESS, data="second", completed_at=clock.now()
        )
        assert await app.broker.settle([outcomes.succeeded(lease, result)], clock.now()) == [True]
    record = await app.get(task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.result is not None and record.result.data == "second"
    assert [(h.attempt, h.status, h.error) for h in record.history] == [
        (1, ResultStatus.FAILURE, "lease expired"),
        (2, ResultStatus.SUCCESS, None),
    ]


async def test_a_late_settle_after_the_lease_was_lost_is_refused(
    app: App, clock: FakeClock
) -> None:
    task_id = await app.submit("gate", {"key": "k", "result": "late"})
    async with running(make_worker(app, instance="one")) as worker:
        await asyncio.wait_for(BOARD.started("k").wait(), 5)
        await worker.fetcher.stop()
        clock.advance(LEASE + 1)
        assert await app.broker.requeue_expired(clock.now(), 10) == [task_id]
        [lease] = await app.broker.reserve("two/w1", 1, LEASE, clock.now())
        # The first run ends before any heartbeat told it: its settle must be refused.
        BOARD.release("k").set()
        await wait_for(lambda: worker.completer.refused == 1, what="the refused settle")
        assert worker.completer.settled == 0
        record = await app.get(task_id)
        assert (record.state, record.attempt, record.result) == (TaskState.RUNNING, 2, None)
        result = TaskResult(
            task_id=task_id, status=ResultStatus.SUCCESS, data="second", completed_at=clock.now()
        )
        assert await app.broker.settle([outcomes.succeeded(lease, result)], clock.now()) == [True]
    record = await app.get(task_id)
    assert record.result is not None and record.result.data == "second"
    assert record.result.attempt == 2


async def test_a_buffered_lease_lost_is_never_started_here(app: App, clock: FakeClock) -> None:
    first = await app.submit("gate", {"key": "first"})
    clock.advance(0.01)  # ids (and so the order of equal run_at) follow the millisecond
    second = await app.submit("gate", {"key": "second"})
    async with running(make_worker(app, workers=1, prefetch=1, instance="one")) as worker:
        await asyncio.wait_for(BOARD.started("first").wait(), 5)
        await wait_for(lambda: worker.pool.holds(second), what="the buffered lease")
        await worker.fetcher.stop()
        clock.advance(LEASE + 1)
        assert sorted(await app.broker.requeue_expired(clock.now(), 10)) == sorted([first, second])
        taken = await app.broker.reserve("two/w1", 2, LEASE, clock.now())
        assert {lease.task_id for lease in taken} == {first, second}
        await worker.heartbeat_once()
        await wait_for(lambda: not worker.pool.held, what="both leases dropped")
        await asyncio.sleep(0.02)
        assert BOARD.events("start") == [("first", 1)]  # the buffered one never started here
        assert worker.completer.settled == worker.completer.refused == 0


async def test_a_lease_lost_and_taken_back_by_this_instance_is_not_interrupted(
    app: App, clock: FakeClock
) -> None:
    """An extend answer about an old lease must not stop a newer lease on the same task.

    Attempt 1 asks for an immediate retry while a heartbeat's extend is in flight; this
    instance settles it and reserves attempt 2 before the extend answers "lost" for the
    attempt-1 lease. The healthy attempt-2 run must go on.
    """
    flaky = FlakyBroker(app.broker)
    task_id = await app.submit("retry.then.gate", {"key": "k", "result": "done"}, max_attempts=3)
    async with running(make_worker(app, broker=flaky)) as worker:
        await wait_for(lambda: worker.pool.holds(task_id), what="attempt 1")

        async def meanwhile() -> None:
            flaky.before_extend = None
            BOARD.release("k#1").set()  # attempt 1 fails with Retry(0): due at once
            await asyncio.wait_for(BOARD.started("k#2").wait(), 5)

        flaky.before_extend = meanwhile
        await worker.heartbeat_once()  # extends the attempt-1 lease: lost by now
        await asyncio.sleep(0.05)
        assert BOARD.events("cancelled") == [], "the attempt-2 run was interrupted"
        BOARD.release("k#2").set()
        [record] = await finished(app, [task_id], timeout=2)
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 2)


# -- reaper and retention -----------------------------------------------------------------------


async def test_only_the_leader_requeues_expired_leases(app: App, clock: FakeClock) -> None:
    a = make_worker(app, instance="a")
    b = make_worker(app, instance="b")
    ids = [await app.submit("quick", n) for n in range(3)]
    leases = await app.broker.reserve("crashed/w1", 3, LEASE, clock.now())
    assert len(leases) == 3
    assert await a.reap_once() == []  # a leads now, but nothing has expired yet
    clock.advance(LEASE + 1)
    assert await b.reap_once() == []  # b does not lead: it leaves them alone
    assert {(await app.get(i)).state for i in ids} == {TaskState.RUNNING}
    assert sorted(await a.reap_once()) == sorted(ids)
    records = [await app.get(i) for i in ids]
    assert {r.state for r in records} == {TaskState.QUEUED}
    assert {r.attempt for r in records} == {1}
    assert {r.history[-1].error for r in records} == {"lease expired"}
    # a stops renewing; once its leadership lapses b takes over.
    more = await app.broker.reserve("crashed/w1", 3, LEASE, clock.now())
    clock.advance(a.settings.reaper_every * 3 + LEASE + 1)
    assert sorted(await b.reap_once()) == sorted(lease.task_id for lease in more)
    assert await a.reap_once() == []


async def test_the_reaper_requeues_every_expired_lease_in_one_round(
    app: App, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reaper_module, "REQUEUE_BATCH", 2)  # many batches from few leases
    ids = [await app.submit("quick", n) for n in range(5)]
    assert len(await app.broker.reserve("crashed/w1", 5, LEASE, clock.now())) == 5
    clock.advance(LEASE + 1)
    assert sorted(await make_worker(app).reap_once()) == sorted(ids)
    assert {(await app.get(i)).state for i in ids} == {TaskState.QUEUED}


async def test_retention_purges_finished_tasks_after_their_ttl(app: App, clock: FakeClock) -> None:
    worker = make_worker(app, finished_ttl=100, dead_ttl=1000, instance="a")
    ok = await app.submit("quick", 1)
    dead = await app.submit("no.retry")
    cancelled = await app.submit("quick", 2)
    await app.cancel(cancelled)
    async with running(worker):
        await worker.run_until_idle(5)
    waiting = await app.submit("quick", 3, delay=10_000)
    states = [(await app.get(i)).state for i in (ok, dead, cancelled)]
    assert states == [TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED]

    assert await worker.purge_once() == 0
    clock.advance(99)
    assert await worker.purge_once() == 0
    clock.advance(2)
    other = make_worker(app, instance="b", finished_ttl=1)
    assert await other.purge_once() == 0  # not the leader: purges nothing
    assert await worker.purge_once() == 2
    assert [r is None for r in await app.broker.get([ok, dead, cancelled, waiting])] == [
        True,
        False,
        True,
        False,
    ]
    clock.advance(900)
    assert await worker.purge_once() == 1
    assert (await app.broker.get([dead]))[0] is None
    assert (await app.get(waiting)).state is TaskState.QUEUED  # never purged


async def test_retention_keeps_purging_until_nothing_is_past_its_ttl(
    app: App, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "PURGE_BATCH", 2)  # many batches from few tasks
    worker = make_worker(app, finished_ttl=10)
    ids = [await app.submit("quick", n) for n in range(5)]
    async with running(worker):
        await worker.run_until_idle(5)
    clock.advance(11)
    assert await worker.purge_once() == 5  # one round, three batches
    assert await app.broker.get(ids) == [None] * 5


async def test_retention_honours_each_tasks_keep_result(app: App, clock: FakeClock) -> None:
    worker = make_worker(app, finished_ttl=100, dead_ttl=1000, instance="a")
    gone = await app.submit("quick", 1, keep_result=0)
    short = await app.submit("quick", 2, keep_result=10)
    long = await app.submit("quick", 3, keep_result=500)
    default = await app.submit("quick", 4)
    async with running(worker):
        await worker.run_until_idle(5)
    assert await app.broker.get([gone]) == [None]  # deleted when it settled

    clock.advance(11)
    assert await worker.purge_once() == 1  # its own 10 s, not the global 100 s
    clock.advance(100)
    assert await worker.purge_once() == 1  # the default one; the 500 s one stays
    assert [r is None for r in await app.broker.get([short, long, default])] == [
        True,
        False,
        True,
    ]
    clock.advance(400)
    assert await worker.purge_once() == 1
    assert await app.broker.get([long]) == [None]


# -- autoscaler ---------------------------------------------------------------------------------


async def test_the_autoscaler_grows_when_saturated_and_shrinks_after_idle_rounds(
    app: App,
) -> None:
    keys = [f"k{n}" for n in range(10)]
    ids = [await app.submit("gate", {"key": k}) for k in keys]
    worker = make_worker(app, workers=2, min_workers=1, max_workers=6, prefetch=2)
    async with running(worker):
        await worker.autoscaler.stop()  # the test drives every round
        pool = worker.pool
        sizes = []
        for _ in range(4):
            # Every worker busy and the buffer full again: the fetcher keeps a grown pool fed
            # without waiting for a running task to end.
            await wait_for(
                lambda: pool.busy == pool.size and pool.waiting == 2,
                timeout=2,
                what=f"{pool.size} workers busy and 2 leases buffered",
            )
            sizes.append(await worker.autoscale_once())
        assert sizes == [3, 4, 6, 6]  # by half, at least one, up to max_workers
        for k in keys:
            BOARD.release(k).set()
        await finished(app, ids)
        await wait_for(lambda: pool.busy == 0)
        sizes = [await worker.autoscale_once() for _ in range(60)]
        assert sizes[:9] == [6] * 9
        assert sizes[9] == 5  # after ten idle rounds
        assert sizes[10:19] == [5] * 9
        assert sizes[19] == 4
        assert sizes[-1] == 1  # never below min_workers
        await wait_for(
            lambda: sum(1 for s in pool.workers.values() if s.task is not None) == 1,
            what="the retired workers to end",
        )
        again = await app.submit("quick", "still works")
        assert (await app.result(again, timeout=5)).data == "still works"


# -- completer ----------------------------------------------------------------------------------


async def reserved(app: App, count: int) -> list[Any]:
    for n in range(count):
        await app.submit("quick", n)
    return await app.broker.reserve("me/w1", count, LEASE, app.clock.now())


def success(lease: Any, now: float) -> Any:
    result = TaskResult(task_id=lease.task_id, status=ResultStatus.SUCCESS, completed_at=now)
    return outcomes.succeeded(lease, result)


async def test_the_completer_settles_what_piled_up_in_one_call(app: App) -> None:
    flaky = FlakyBroker(app.broker)
    completer = Completer(flaky, app.clock, batch_size=40)
    leases = await reserved(app, 100)
    for lease in leases:
        completer.add(success(lease, app.clock.now()))
    assert completer.pending == 100
    assert flaky.calls == {}  # add does no I/O
    assert [await completer.run_once() for _ in range(3)] == [40, 40, 20]
    assert flaky.settle_sizes == [40, 40, 20]
    states = {r.state for r in await app.broker.get([lease.task_id for lease in leases])}
    assert states == {TaskState.SUCCEEDED}


async def test_a_busy_pool_settles_many_outcomes_per_call(app: App) -> None:
    flaky = FlakyBroker(app.broker)
    ids = [await app.submit("quick", n) for n in range(300)]
    async with running(make_worker(app, broker=flaky, workers=5)):
        await finished(app, ids)
    assert sum(flaky.settle_sizes) == 300
    assert flaky.calls["settle"] <= 300 // 5  # batches, not a call per task


async def test_the_completer_never_drops_an_outcome_when_settle_fails(app: App) -> None:
    flaky = FlakyBroker(app.broker)
    completer = Completer(flaky, app.clock)
    leases = await reserved(app, 10)
    for lease in leases:
        completer.add(success(lease, app.clock.now()))
    flaky.fail_settles = 3
    for _ in range(3):
        with pytest.raises(BrokerUnavailable):
            await completer.run_once()
        assert completer.pending == 10
    assert await completer.run_once() == 10
    assert completer.pending == 0


async def test_a_running_pool_rides_out_a_broker_that_fails_to_settle(app: App) -> None:
    flaky = FlakyBroker(app.broker)
    flaky.fail_settles = 3
    ids = [await app.submit("quick", n) for n in range(20)]
    async with running(make_worker(app, broker=flaky)) as worker:
        records = await finished(app, ids)
        assert worker.completer.settled == 20
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    assert {r.attempt for r in records} == {1}
    assert flaky.fail_settles == 0


async def test_outcomes_pending_at_stop_are_settled_despite_failures(app: App) -> None:
    flaky = FlakyBroker(app.broker)
    worker = make_worker(app, broker=flaky)
    await worker.start()
    await worker.completer.stop()  # outcomes now pile up until the worker stops
    ids = [await app.submit("quick", n) for n in range(5)]
    await wait_for(lambda: worker.completer.pending == 5, what="five outcomes")
    flaky.fail_settles = 2
    await worker.stop(grace=0)
    records = [await app.get(i) for i in ids]
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
