"""The pool's buffer: the broker's priority order across reserves, a bounded prefetch, a
fetcher that survives a failing broker, and what "running" counts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskengine.clock import FakeClock
from taskengine.model import TaskState
from taskengine.testing import running_worker
from tests.brokers.support import T0
from tests.runtime.apps import BOARD, build_app, finished, wait_for


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


def started_keys() -> list[str]:
    return [key for key, _ in BOARD.events("start")]


async def test_high_submitted_while_long_low_tasks_run_starts_at_the_next_free_worker() -> None:
    app = build_app()
    low = [await app.submit("gate", {"key": f"low{n}"}, priority="low") for n in range(4)]
    async with running_worker(app, workers=2) as worker:
        await asyncio.wait_for(BOARD.started("low1").wait(), 5)
        high = await app.submit("gate", {"key": "high"}, priority="high")
        assert worker.pool.waiting == 0  # nothing measured yet: nothing prefetched
        BOARD.release("low0").set()
        await asyncio.wait_for(BOARD.started("high").wait(), 5)
        assert started_keys() == ["low0", "low1", "high"]
        for key in ("low1", "low2", "low3", "high"):
            BOARD.release(key).set()
        await finished(app, [*low, high])


async def test_the_buffer_hands_out_leases_in_priority_order_across_reserves() -> None:
    app = build_app()
    low = [await app.submit("gate", {"key": f"low{n}"}, priority="low") for n in range(4)]
    async with running_worker(app, workers=1, prefetch=3) as worker:
        await asyncio.wait_for(BOARD.started("low0").wait(), 5)
        await wait_for(lambda: worker.pool.waiting == 3, what="three low tasks buffered")
        high = await app.submit("gate", {"key": "high"}, priority="high")
        BOARD.release("low0").set()  # low1 starts; the freed place brings HIGH
        await wait_for(lambda: worker.pool.holds(high), what="high buffered")
        BOARD.release("low1").set()
        await asyncio.wait_for(BOARD.started("high").wait(), 5)
        assert started_keys() == ["low0", "low1", "high"]
        for key in ("low2", "low3", "high"):
            BOARD.release(key).set()
        await finished(app, [*low, high])


async def test_prefetch_grows_for_short_tasks() -> None:
    app = build_app()
    ids = [await app.submit("quick", n) for n in range(200)]
    async with running_worker(app, workers=2) as worker:
        await finished(app, ids)
        assert worker.pool.mean_run is not None
        assert worker.pool.prefetch_now() == worker.pool.prefetch == 2


class WaitFails:
    """Wraps a broker whose `wait_for_work` fails the first `times` calls."""

    def __init__(self, inner: Any, times: int) -> None:
        self._inner = inner
        self.times = times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def wait_for_work(self, timeout: float) -> None:
        if self.times > 0:
            self.times -= 1
            raise ConnectionError("the wake-up channel broke")
        await self._inner.wait_for_work(timeout)


async def test_the_fetcher_survives_a_failing_wait_for_work() -> None:
    from taskengine.runtime.engine import Engine

    app = build_app()
    await app.start()
    broker = WaitFails(app.broker, times=3)
    worker = Engine(broker, app.registry, app.settings, clock=app.clock)  # type: ignore[arg-type]
    await worker.start()
    try:
        await wait_for(lambda: broker.times == 0, what="the failures")
        task_id = await app.submit("quick", "after")
        [record] = await finished(app, [task_id])
        assert record.state is TaskState.SUCCEEDED
        assert worker.fetcher.failures == 0
    finally:
        await worker.stop()
        await app.close()


async def test_queue_wait_counts_from_creation_when_run_at_is_in_the_past() -> None:
    clock = FakeClock(T0)
    app = build_app(clock=clock)
    task_id = await app.submit("quick", 1, run_at=0.0)  # backdated to 1970
    clock.advance(2.0)
    async with running_worker(app):
        await finished(app, [task_id])
    waits = app.metrics.waits["quick"]
    assert waits.count == 1
    assert waits.sum <= 2.0 + 1e-6
