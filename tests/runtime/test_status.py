"""The engine's status snapshot: the one view of the pool that telemetry reads."""

from __future__ import annotations

from taskengine.policy.breaker import BreakerState
from taskengine.testing import running_worker
from tests.runtime.apps import BOARD, build_app, finished, wait_for


async def test_status_shows_the_pool_its_workers_breakers_and_overrunning_threads() -> None:
    BOARD.reset()
    app = build_app()
    failing = [await app.submit("fail.always", max_attempts=1) for _ in range(5)]  # opens it
    overrun = await app.submit("thread.gate", {"key": "t"}, timeout=0.1, max_attempts=1)
    async with running_worker(app, workers=3) as worker:
        await finished(app, [*failing, overrun])
        held = await app.submit("gate", {"key": "g"})
        await BOARD.started("g").wait()
        status = worker.status()
        ids = [w.info.id for w in status.workers]
        running = [w.info.current_task for w in status.workers if w.info.current_task]
        BOARD.thread_release("t").set()
        BOARD.release("g").set()
        await finished(app, [held])
    assert status.at <= app.clock.now()
    assert (status.instance, status.size, status.busy, status.buffered) == (
        worker.instance,
        3,
        1,
        0,
    )
    assert status.overrunning_threads == 1  # the thread past its timeout still runs
    assert ids == [f"{worker.instance}/w{n}" for n in (1, 2, 3)]
    assert all(w.active for w in status.workers)
    assert running == [held]
    assert status.breakers["fail.always"].state is BreakerState.OPEN


async def test_a_retired_worker_stays_in_the_status_as_inactive() -> None:
    app = build_app()
    async with running_worker(app, workers=2) as worker:
        worker.pool.resize(1)
        await wait_for(lambda: not worker.status().workers[1].active, what="w2 to retire")
        status = worker.status()
    assert status.size == 1
    assert [w.active for w in status.workers] == [True, False]
