"""The worker pool as a whole: cancelling tasks, per-worker state and the worker registry."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from taskengine.brokers import CancelResult
from taskengine.clock import FakeClock
from taskengine.model import ResultStatus, TaskState
from taskengine.testing import drain, running_worker
from tests.runtime.apps import BOARD, build_app, finished, wait_for


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_cancel_of_a_running_task_stops_it_within_a_second() -> None:
    app = build_app()
    task_id = await app.submit("gate", {"key": "a"})
    async with running_worker(app):
        await asyncio.wait_for(BOARD.started("a").wait(), 5)
        start = time.monotonic()
        assert await app.cancel(task_id) is CancelResult.REQUESTED
        [record] = await finished(app, [task_id], timeout=1)
        assert time.monotonic() - start < 1
    assert record.state is TaskState.CANCELLED
    assert record.result is not None
    assert record.result.status is ResultStatus.CANCELLED
    assert [h.status for h in record.history] == [ResultStatus.CANCELLED]
    assert BOARD.events("cancelled") == [("a", 1)]
    assert BOARD.events("finish") == []


async def test_cancel_from_elsewhere_reaches_the_run_at_the_next_heartbeat() -> None:
    app = build_app(heartbeat_every=5)
    task_id = await app.submit("gate", {"key": "a"})
    async with running_worker(app) as worker:
        await asyncio.wait_for(BOARD.started("a").wait(), 5)
        # Another process cancels through the broker: this worker learns it from extend.
        [answer] = await app.broker.cancel([task_id], app.clock.now())
        assert answer is CancelResult.REQUESTED
        assert (await app.get(task_id)).state is TaskState.RUNNING
        await worker.heartbeat_once()
        [record] = await finished(app, [task_id], timeout=1)
    assert record.state is TaskState.CANCELLED
    assert record.result is not None and record.result.status is ResultStatus.CANCELLED
    assert BOARD.events("cancelled") == [("a", 1)]


async def test_cancel_of_a_buffered_task_means_it_never_starts() -> None:
    app = build_app()
    first = await app.submit("gate", {"key": "first"}, priority="high")
    second = await app.submit("gate", {"key": "second"})
    async with running_worker(app, workers=1, prefetch=1) as worker:
        await asyncio.wait_for(BOARD.started("first").wait(), 5)
        await wait_for(lambda: worker.pool.holds(second), what="the second lease")
        assert await app.cancel(second) is CancelResult.REQUESTED
        BOARD.release("first").set()
        records = await finished(app, [first, second])
    assert [r.state for r in records] == [TaskState.SUCCEEDED, TaskState.CANCELLED]
    assert records[1].result is not None
    assert records[1].result.status is ResultStatus.CANCELLED
    assert BOARD.events("start") == [("first", 1)]


async def test_cancel_of_a_queued_task_means_it_never_runs() -> None:
    app = build_app()
    await app.start()
    task_id = await app.submit("gate", {"key": "never"})
    assert await app.cancel(task_id) is CancelResult.CANCELLED
    record = await app.get(task_id)
    assert record.state is TaskState.CANCELLED
    assert record.result is not None and record.result.status is ResultStatus.CANCELLED
    assert record.attempt == 0
    await drain(app, timeout=5)
    assert BOARD.events("start") == []
    assert (await app.get(task_id)).state is TaskState.CANCELLED
    assert await app.cancel(task_id) is CancelResult.FINISHED


async def test_workers_have_stable_ids_and_count_what_they_did() -> None:
    clock = FakeClock()
    app = build_app(clock=clock, heartbeat_every=60, lease_for=120)
    held = await app.submit("gate", {"key": "held", "result": 1})
    async with running_worker(app, workers=3) as worker:
        instance = worker.instance
        ids = [f"{instance}/w{n}" for n in (1, 2, 3)]
        assert [slot.id for slot in worker.pool.workers.values()] == ids
        await asyncio.wait_for(BOARD.started("held").wait(), 5)
        clock.advance(7)
        await worker.heartbeat_once()
        registry = await app.broker.workers(clock.now())
        assert [w.id for w in registry] == ids
        assert {w.instance for w in registry} == {instance}
        assert {w.pid for w in registry} == {os.getpid()}
        assert {w.last_seen for w in registry} == {clock.now()}
        busy = [w for w in registry if w.state == "busy"]
        assert len(busy) == 1
        assert busy[0].current_task == held
        assert busy[0].busy_seconds == pytest.approx(7)
        assert sorted(w.state for w in registry) == ["busy", "idle", "idle"]

        BOARD.release("held").set()
        [record] = await finished(app, [held])
        assert record.result is not None and record.result.worker_id == busy[0].id
        quick = [await app.submit("quick", n) for n in range(6)]
        await finished(app, quick)
        clock.advance(1)
        await worker.heartbeat_once()
        registry = await app.broker.workers(clock.now())
        assert sum(w.processed for w in registry) == 7
        by_id = {w.id: w for w in registry}
        assert by_id[busy[0].id].busy_seconds == pytest.approx(7)  # the fake clock's time
        assert {w.state for w in registry} == {"idle"}
        assert {w.current_task for w in registry} == {None}
        done = [await app.get(i) for i in quick]
        assert {r.result.worker_id for r in done if r.result} <= set(ids)

        # Shrinking and growing again reuses the same numbers.
        worker.pool.resize(1)
        await wait_for(lambda: worker.pool.workers[3].task is None, what="w3 to retire")
        worker.pool.resize(3)
        assert [s.id for s in worker.pool.workers.values() if not s.retiring] == ids


async def test_the_registry_lists_only_live_workers_after_the_pool_shrinks() -> None:
    clock = FakeClock()
    app = build_app(clock=clock, heartbeat_every=60, lease_for=120)
    async with running_worker(app, workers=3) as worker:
        await asyncio.sleep(0.01)  # let the workers start
        worker.pool.resize(1)
        await wait_for(
            lambda: all(s.task is None for n, s in worker.pool.workers.items() if n > 1),
            what="two workers to retire",
        )
        clock.advance(1)
        await worker.heartbeat_once()
        seen = await app.broker.workers(clock.now())
        assert [w.id for w in seen] == [f"{worker.instance}/w1"]


async def test_a_pool_shrunk_and_grown_at_once_still_runs_every_worker() -> None:
    app = build_app()
    async with running_worker(app, workers=3) as worker:
        # Before the workers' coroutines had a turn: w2 and w3 are retired, then wanted again.
        worker.pool.resize(1)
        worker.pool.resize(3)
        keys = ["x", "y", "z"]
        ids = [await app.submit("gate", {"key": k}) for k in keys]
        try:
            await wait_for(
                lambda: all(BOARD.started(k).is_set() for k in keys),
                timeout=2,
                what="three tasks running at once on three workers",
            )
        finally:
            for k in keys:
                BOARD.release(k).set()
        await finished(app, ids)
