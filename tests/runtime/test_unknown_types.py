"""A rolling deploy: an instance handed a task type it does not run gives the task back,
without spending an attempt, for an instance that runs it; it is dead-lettered only when no
live instance has run the type for `unknown_type_grace` seconds."""

from __future__ import annotations

import pytest

from taskengine.app import App
from taskengine.clock import FakeClock
from taskengine.model import ResultStatus, TaskState
from taskengine.runtime.known_types import SNOOZE_FOR
from taskengine.testing import running_worker
from tests.brokers.support import T0
from tests.runtime.apps import BOARD, build_app, finished, wait_for


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_an_old_instance_gives_a_new_type_back_for_the_new_instance() -> None:
    clock = FakeClock(T0)
    new = build_app(clock=clock)
    new.task("report.new")(lambda payload: {"rendered": payload})
    old = App(settings=new.settings, clock=clock, builtins=False)  # knows no task type
    old._broker = new.broker  # one broker shared by both deploys
    task_id = await new.submit("report.new", 7)
    async with running_worker(old) as old_worker:
        await wait_for(lambda: old_worker.completer.settled == 1, what="the task given back")
        record = await new.get(task_id)
        assert (record.state, record.attempt) == (TaskState.QUEUED, 0)
        assert record.run_at > clock.now()
        async with running_worker(new, instance="new") as new_worker:
            await new_worker.heartbeat_once()  # the new deploy says what it runs
            await old_worker.heartbeat_once()  # the old one reads who runs report.new

            async def ran() -> bool:  # either deploy may take it; only the new one runs it
                clock.advance(SNOOZE_FOR + 1)
                return (await new.get(task_id)).state is TaskState.SUCCEEDED

            await wait_for(ran, 10, "the new deploy to run it")
            [record] = await finished(new, [task_id])
    assert (record.state, record.attempt) == (TaskState.SUCCEEDED, 1)
    assert record.result is not None and record.result.data == {"rendered": 7}


async def test_a_type_no_live_instance_runs_is_dead_lettered_after_the_grace() -> None:
    clock = FakeClock(T0)
    app = build_app(clock=clock, unknown_type_grace=30)
    task_id = await app.submit("gate", {"key": "x"})
    app.registry._specs.pop("gate")  # this deploy no longer runs it; nobody else does
    async with running_worker(app) as worker:
        await wait_for(lambda: worker.completer.settled == 1, what="the first give-back")
        assert (await app.get(task_id)).state is TaskState.QUEUED
        await worker.heartbeat_once()
        clock.advance(31)
        [record] = await finished(app, [task_id])
    assert record.state is TaskState.DEAD
    assert record.result is not None and record.result.status is ResultStatus.FAILURE
    assert "no live instance runs it" in (record.result.error or "")
    assert BOARD.events("start") == []
