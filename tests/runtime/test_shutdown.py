"""Graceful shutdown: buffered leases go back at once, runs get the grace period to finish,
the rest are interrupted and handed back with no attempt burned, and nothing is lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskengine.app import App
from taskengine.errors import BrokerUnavailable, ShutdownIncomplete
from taskengine.model import TaskState
from taskengine.runtime.engine import Engine
from tests.runtime.apps import BOARD, build_app, wait_for


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    app = build_app(processes=True)
    await app.start()
    yield app
    await app.close()


async def states(app: App, ids: list[str]) -> list[tuple[TaskState, int]]:
    return [((r := await app.get(i)).state, r.attempt) for i in ids]


async def loaded_worker(app: App) -> tuple[Engine, dict[str, str]]:
    """A worker of 2 with 3 leases buffered: 'fin' and 'slow' running, b0-b2 waiting, and
    two more tasks still queued in the broker."""
    ids = {
        "fin": await app.submit("gate", {"key": "fin"}, priority="high"),
        "slow": await app.submit("gate", {"key": "slow"}, priority="high"),
    }
    for key in ("b0", "b1", "b2", "q0", "q1"):
        ids[key] = await app.submit("gate", {"key": key})
    worker = app.engine(workers=2, prefetch=3)
    await worker.start()
    await asyncio.wait_for(BOARD.started("fin").wait(), 5)
    await asyncio.wait_for(BOARD.started("slow").wait(), 5)
    await wait_for(lambda: len(worker.pool.held) == 5, what="three leases buffered")
    return worker, ids


async def test_stop_releases_the_buffer_lets_runs_finish_and_hands_back_the_rest(
    app: App,
) -> None:
    worker, ids = await loaded_worker(app)
    buffered = [i for k, i in ids.items() if k != "fin" and k != "slow" and worker.pool.holds(i)]
    untouched = [i for k, i in ids.items() if k not in ("fin", "slow") and i not in buffered]
    assert len(buffered) == 3 and len(untouched) == 2
    assert await app.broker.workers(0.0) != []

    start = time.monotonic()
    stopping = asyncio.create_task(worker.stop(grace=0.5))
    # The buffered leases go back at once, before the grace period is over.
    await wait_for(
        lambda: _all(app, buffered, (TaskState.QUEUED, 0)), timeout=0.4, what="the buffer back"
    )
    BOARD.release("fin").set()  # finishes within the grace period
    await stopping
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 3

    fin = await app.get(ids["fin"])
    assert (fin.state, fin.attempt) == (TaskState.SUCCEEDED, 1)
    slow = await app.get(ids["slow"])
    assert (slow.state, slow.attempt) == (TaskState.QUEUED, 0)  # interrupted, attempt refunded
    assert slow.history == [] and slow.result is None
    assert BOARD.events("cancelled") == [("slow", 1)]
    assert await states(app, buffered + untouched) == [(TaskState.QUEUED, 0)] * 5
    assert sorted(k for k, _ in BOARD.events("start")) == ["fin", "slow"]
    # Nothing lost: every task is finished or waiting to run again, none held by anyone.
    assert {s for s, _ in await states(app, list(ids.values()))} == {
        TaskState.SUCCEEDED,
        TaskState.QUEUED,
    }
    assert await app.broker.workers(0.0) == []  # the registry forgot this instance
    assert worker.state == "stopped"


async def _all(app: App, ids: list[str], expected: tuple[TaskState, int]) -> bool:
    return await states(app, ids) == [expected] * len(ids)


async def test_a_stopped_worker_hands_everything_to_the_next_one(app: App) -> None:
    worker, ids = await loaded_worker(app)
    await worker.stop(grace=0.1)
    BOARD.reset()
    for key in ids:
        BOARD.release(key).set()
    again = app.engine(workers=5)
    await again.start()
    try:
        await again.run_until_idle(5)
    finally:
        await again.stop()
    records = [await app.get(i) for i in ids.values()]
    assert {r.state for r in records} == {TaskState.SUCCEEDED}
    # Each ran to completion once; the ones handed back start again at attempt 1.
    assert {r.attempt for r in records} == {1}
    assert sorted(k for k, _ in BOARD.events("finish")) == sorted(ids)


async def test_force_stop_skips_the_grace_period(app: App) -> None:
    worker, ids = await loaded_worker(app)
    start = time.monotonic()
    stopping = asyncio.create_task(worker.stop(grace=30))
    await wait_for(lambda: worker.state == "stopping")
    await asyncio.sleep(0.05)
    worker.force_stop()
    await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - start < 5
    assert sorted(k for k, _ in BOARD.events("cancelled")) == ["fin", "slow"]
    assert await states(app, list(ids.values())) == [(TaskState.QUEUED, 0)] * len(ids)
    assert await app.broker.workers(0.0) == []


async def test_a_second_stop_waits_for_the_first(app: App) -> None:
    worker, _ = await loaded_worker(app)
    first = asyncio.create_task(worker.stop(grace=0.2))
    await wait_for(lambda: worker.state == "stopping")
    await asyncio.wait_for(worker.stop(grace=0), 5)
    assert worker.state == "stopped"
    assert first.done()


async def test_a_blocking_handler_past_the_grace_is_handed_back(app: App) -> None:
    task_id = await app.submit("thread.gate", {"key": "t"})
    worker = app.engine(workers=1)
    await worker.start()
    await wait_for(lambda: BOARD.events("start") == [("t", 0)], what="the thread to start")
    start = time.monotonic()
    await worker.stop(grace=0.2)
    # A thread cannot be killed: the worker does not wait for its 30 s (bound generous for load).
    assert time.monotonic() - start < 15
    record = await app.get(task_id)
    assert (record.state, record.attempt) == (TaskState.QUEUED, 0)
    BOARD.thread_release("t").set()


@pytest.mark.slow
async def test_a_process_run_past_the_grace_is_killed_and_handed_back(app: App) -> None:
    task_id = await app.submit("spin", timeout=60)
    worker = app.engine(workers=1, process_pool=1)
    await worker.start()
    await wait_for(lambda: worker.pool.busy == 1, timeout=10, what="the run to start")
    await asyncio.sleep(0.3)  # well inside the child
    start = time.monotonic()
    await worker.stop(grace=0.2)
    assert time.monotonic() - start < 5
    record = await app.get(task_id)
    assert (record.state, record.attempt) == (TaskState.QUEUED, 0)


class SlowReply:
    """Wraps a broker: `reserve` is done in the store, but its reply waits for `reply`."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.granted = asyncio.Event()
        self.reply = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def reserve(self, *args: Any) -> Any:
        leases = await self._inner.reserve(*args)
        if leases:
            self.granted.set()
            await self.reply.wait()
        return leases


async def test_a_stop_during_a_reserve_hands_back_what_the_broker_granted(app: App) -> None:
    ids = [await app.submit("gate", {"key": f"k{n}"}) for n in range(3)]
    broker = SlowReply(app.broker)
    worker = Engine(broker, app.registry, app.settings, clock=app.clock)
    await worker.start()
    await asyncio.wait_for(broker.granted.wait(), 5)
    assert await states(app, ids) == [(TaskState.RUNNING, 1)] * 3  # granted, reply on its way
    stopping = asyncio.create_task(worker.stop(grace=0.2))
    await wait_for(lambda: worker.state == "stopping")
    broker.reply.set()
    await asyncio.wait_for(stopping, 5)
    assert await states(app, ids) == [(TaskState.QUEUED, 0)] * 3
    assert BOARD.events("start") == []


async def test_a_run_that_swallows_every_cancellation_does_not_hold_up_shutdown(app: App) -> None:
    task_id = await app.submit("swallow.every.cancel", {"key": "w"})
    worker = app.engine(workers=1)
    await worker.start()
    await asyncio.wait_for(BOARD.started("w").wait(), 5)
    await asyncio.wait_for(worker.stop(grace=0.2), 10)
    assert worker.state == "stopped"
    assert len(BOARD.events("swallowed")) >= 2  # the interruption was sent more than once
    record = await app.get(task_id)
    assert (record.state, record.attempt) == (TaskState.QUEUED, 0)  # handed back
    BOARD.release("w").set()


class DownBroker:
    """Wraps a broker that goes away: once `down` is set, every call but `get` fails."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name in ("get", "capabilities") or not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise BrokerUnavailable(f"{name}: the broker went away")
            return await attr(*args, **kwargs)

        return call


async def test_stop_with_the_broker_gone_finishes_every_step_and_says_what_it_kept(
    app: App,
) -> None:
    ids = [await app.submit("gate", {"key": f"d{n}"}) for n in range(2)]
    broker = DownBroker(app.broker)
    worker = Engine(broker, app.registry, app.settings, clock=app.clock)
    await worker.start()
    await asyncio.wait_for(BOARD.started("d0").wait(), 5)
    await asyncio.wait_for(BOARD.started("d1").wait(), 5)
    broker.down = True
    with pytest.raises(ShutdownIncomplete) as caught:
        await asyncio.wait_for(worker.stop(grace=0.2), 60)
    assert worker.state == "stopped"
    assert "2 outcomes" in str(caught.value)
    assert all(task_id in str(caught.value) for task_id in ids)
