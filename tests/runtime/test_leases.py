"""Leases are keyed by token: a task given out again to the same instance runs once more, the
run under the lost lease stops, and only the newest lease is extended and settled."""

from __future__ import annotations

import asyncio

import pytest

from taskengine.clock import FakeClock
from taskengine.model import TaskState
from taskengine.testing import running_worker
from tests.brokers.support import T0
from tests.runtime.apps import BOARD, finished, wait_for
from tests.runtime.conftest import MakeApp

LEASE = 30.0


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_a_task_given_out_again_to_the_same_instance_is_not_run_in_a_loop(
    app_on: MakeApp,
) -> None:
    clock = FakeClock(T0)
    app = await app_on(clock=clock, lease_for=LEASE, heartbeat_every=10)
    task_id = await app.submit("gate", {"key": "a", "result": "done"}, max_attempts=3)
    async with running_worker(app, workers=2) as worker:
        await asyncio.wait_for(BOARD.started("a").wait(), 10)
        # The lease lapses while this instance lives (a paused VM, a broker blip): the reaper
        # queues the task again and this same instance reserves it at once.
        clock.advance(LEASE + 1)
        assert await app.broker.requeue_expired(clock.now(), 10) == [task_id]
        await wait_for(lambda: ("a", 2) in BOARD.events("start"), 10, "the second run")
        await wait_for(lambda: BOARD.events("cancelled") == [("a", 1)], 10, "the lost run stop")
        # The newest lease is the one held and extended.
        before = (await app.get(task_id)).lease_expires_at
        clock.advance(1)
        await worker.heartbeat_once()
        record = await app.get(task_id)
        assert record.state is TaskState.RUNNING
        assert before is not None and record.lease_expires_at is not None
        assert record.lease_expires_at > before
        BOARD.release("a").set()
        [record] = await finished(app, [task_id], timeout=10)
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 2)
    assert record.result is not None and record.result.data == "done"
    assert BOARD.events("finish") == [("a", 2)]
    assert not worker.pool.held
