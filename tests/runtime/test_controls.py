"""Remote control (ADR 0036): drain, resume, resize and shut down an engine through the broker,
on every broker under test."""

from __future__ import annotations

import asyncio

import pytest

from taskengine.app import App
from taskengine.brokers import ControlCommand
from taskengine.model import TaskState
from tests.runtime.apps import BOARD, Key, wait_for
from tests.runtime.conftest import MakeApp

POLL = 0.05  # the control watch's interval here (0.5 s by default)
BOUND = 10.0  # generous: the machine is shared


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def _state(app: App, task_id: str) -> TaskState:
    return (await app.get(task_id)).state


async def test_a_drained_engine_finishes_its_runs_and_takes_nothing_until_resumed(
    app_on: MakeApp,
) -> None:
    app = await app_on(cancel_poll_every=POLL, workers=2)
    engine = app.engine()
    await engine.start()
    try:
        running = await app.submit("gate", Key(key="a", result=1))
        await asyncio.wait_for(BOARD.started("a").wait(), BOUND)

        await app.inspector.control(engine.instance, ControlCommand.DRAIN)
        await wait_for(lambda: engine.draining, BOUND, "the drain to be honoured")
        later = await app.submit("gate", Key(key="b", result=2))
        BOARD.release("a").set()
        await wait_for(
            lambda: _done(app, running), BOUND, "the running task to finish while drained"
        )
        await wait_for(lambda: engine.status().busy == 0, BOUND, "the pool to be idle")
        assert await _state(app, later) is TaskState.QUEUED
        assert BOARD.events("start") == [("a", 1)]

        async def reported() -> bool:
            infos = await app.inspector.live_workers(app.clock.now())
            return bool(infos) and all(info.draining for info in infos)

        await wait_for(reported, BOUND, "the registry to say the instance drains")

        await app.inspector.control(engine.instance, ControlCommand.RESUME)
        await asyncio.wait_for(BOARD.started("b").wait(), BOUND)
        assert not engine.draining
        BOARD.release("b").set()
    finally:
        await engine.stop(grace=0)


async def _done(app: App, task_id: str) -> bool:
    return await _state(app, task_id) is TaskState.SUCCEEDED


async def test_resize_sets_the_pool_size(app_on: MakeApp) -> None:
    app = await app_on(cancel_poll_every=POLL, workers=2)
    engine = app.engine()
    await engine.start()
    try:
        await app.inspector.control(engine.instance, ControlCommand.RESIZE, size=5)
        await wait_for(lambda: engine.status().size == 5, BOUND, "the pool to grow")
        await app.inspector.control(engine.instance, ControlCommand.RESIZE, size=1)
        await wait_for(lambda: engine.status().size == 1, BOUND, "the pool to shrink")
    finally:
        await engine.stop(grace=0)


async def test_shutdown_stops_the_engine_gracefully(app_on: MakeApp) -> None:
    app = await app_on(cancel_poll_every=POLL)
    engine = app.engine()
    await engine.start()
    task_id = await app.submit("gate", Key(key="s", result=3))
    await asyncio.wait_for(BOARD.started("s").wait(), BOUND)

    await app.inspector.control(engine.instance, ControlCommand.SHUTDOWN)
    await wait_for(lambda: engine.state != "running", BOUND, "the shutdown to begin")
    BOARD.release("s").set()  # the running task finishes within the grace period
    await asyncio.wait_for(engine.wait_stopped(), BOUND)
    assert await _state(app, task_id) is TaskState.SUCCEEDED


async def test_a_resize_must_name_a_size(app_on: MakeApp) -> None:
    from taskengine.errors import ValidationError

    app = await app_on()
    with pytest.raises(ValidationError):
        await app.inspector.control("any", ControlCommand.RESIZE)
    with pytest.raises(ValidationError):
        await app.inspector.control("any", ControlCommand.RESIZE, size=0)
    with pytest.raises(ValidationError):
        await app.inspector.control("any", ControlCommand.DRAIN, size=3)
