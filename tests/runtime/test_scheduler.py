"""Periodic tasks: one task per slot across instances, leader failover, the worker running them."""

from __future__ import annotations

import asyncio

import pytest

from taskengine.app import App
from taskengine.brokers import BrokerBackend, TaskFilter
from taskengine.clock import FakeClock
from taskengine.errors import ValidationError
from taskengine.model import TaskState
from taskengine.policy.cron import CronEntry
from taskengine.runtime.scheduler import Scheduler

T0 = 1_700_000_000.0
EVERY_10S = CronEntry(name="ten", cron="* * * * * */10", type="time.sleep", payload={"seconds": 0})


def scheduler(app: App, instance: str, *entries: CronEntry) -> Scheduler:
    return Scheduler(
        app.broker,
        app.clock,
        list(entries) or [EVERY_10S],
        app.build_periodic,
        instance=instance,
        lease_for=5.0,
        catch_up=60.0,
    )


async def stored_keys(broker: BrokerBackend) -> list[str]:
    page = await broker.list_tasks(TaskFilter(), 1000)
    return sorted(r.idempotency_key or "" for r in page.items)


@pytest.fixture
async def app() -> App:
    app = App("memory://", clock=FakeClock(T0), builtins=True)
    await app.start()
    yield app  # type: ignore[misc]
    await app.close()


async def test_two_instances_store_each_slot_once(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    first, second = scheduler(app, "a"), scheduler(app, "b")
    for _ in range(60):
        clock.advance(1)
        await first.run_once()
        await second.run_once()
    keys = await stored_keys(app.broker)
    assert keys == [f"cron:ten:{int(T0) + s}" for s in range(10, 61, 10)]


async def test_failover_neither_skips_nor_doubles_a_slot(app: App) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    leader, standby = scheduler(app, "a"), scheduler(app, "b")
    for _ in range(25):  # the leader submits T0+10 and T0+20
        clock.advance(1)
        await leader.run_once()
        assert await standby.run_once() == []
    for _ in range(35):  # the leader is gone: the standby takes over once its lease runs out
        clock.advance(1)
        await standby.run_once()
    keys = await stored_keys(app.broker)
    assert keys == [f"cron:ten:{int(T0) + s}" for s in range(10, 61, 10)]


async def test_slots_from_before_the_start_and_the_catch_up_window_are_skipped(
    app: App,
) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    late = scheduler(app, "a")
    clock.advance(25)
    assert await late.run_once() == []  # T0+10 and T0+20 came before it started
    standby = scheduler(app, "b")
    await standby.run_once()  # watching from T0+25 on
    clock.advance(600)  # the leader "a" froze for ten minutes
    created = await standby.run_once()
    assert len(created) == 6  # the last minute only, not ten minutes of slots


async def test_periodic_tasks_are_checked_when_the_worker_is_built() -> None:
    app = App("memory://", builtins=True)
    app.periodic("x", "* * * * *", "no.such.type")
    with pytest.raises(ValidationError):
        app.engine()
    app = App("memory://", builtins=True)
    app.periodic("y", "* * * * *", "cpu.fibonacci", {"n": "not a number"})
    with pytest.raises(ValidationError):
        app.engine()
    app = App("memory://", builtins=True)
    app.periodic("z", "* * * * *", "cpu.fibonacci", {"n": 3})
    with pytest.raises(ValidationError, match="named 'z'"):
        app.periodic("z", "*/2 * * * *", "cpu.fibonacci", {"n": 3})


async def test_a_worker_runs_its_periodic_tasks() -> None:
    app = App("memory://", builtins=True)
    app.periodic("every-second", "* * * * * *", "time.sleep", {"seconds": 0})
    async with app:
        worker = app.engine(scheduler_every=0.2)
        await worker.start()
        try:
            for _ in range(100):
                page = await app.broker.list_tasks(
                    TaskFilter(states=frozenset({TaskState.SUCCEEDED})), 10
                )
                if len(page.items) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()
    keys = {r.idempotency_key for r in page.items}
    assert len(keys) >= 2 and all(k and k.startswith("cron:every-second:") for k in keys)


# -- the operator's view and switch (ADR 0036) --------------------------------------------------


async def test_a_disabled_entry_submits_nothing_and_skips_its_slots_when_enabled_again(
    app: App,
) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    app.periodic("ten", EVERY_10S.cron, "time.sleep", {"seconds": 0})
    leader = scheduler(app, "a")
    await app.inspector.set_periodic("ten", enabled=False)
    for _ in range(30):
        clock.advance(1)
        await leader.run_once()
    assert await stored_keys(app.broker) == []
    assert leader.last_fired == {}

    await app.inspector.set_periodic("ten", enabled=True)
    for _ in range(10):
        clock.advance(1)
        await leader.run_once()
    assert await stored_keys(app.broker) == [f"cron:ten:{int(T0) + 40}"]  # no catch-up burst
    assert leader.last_fired == {"ten": T0 + 40}
    assert leader.leading


async def test_the_periodic_view_names_the_leader_the_next_slot_and_the_last_fired(
    app: App,
) -> None:
    clock = app.clock
    assert isinstance(clock, FakeClock)
    app.periodic("ten", "* * * * * */10", "time.sleep", {"seconds": 0})
    engine = app.engine()
    await engine.start()
    try:
        await engine.scheduler.run_once()  # the first look: slots after now are due
        clock.advance(10)
        await engine.scheduler.run_once()
        await engine.heartbeat_once()
        [view] = await app.inspector.periodic(clock.now())
        assert (view.name, view.cron, view.type) == ("ten", "* * * * * */10", "time.sleep")
        assert view.leader == engine.instance
        assert view.last_fired == T0 + 10
        assert view.next_slot == T0 + 20
        assert view.enabled
        await app.inspector.set_periodic("ten", enabled=False)
        [view] = await app.inspector.periodic(clock.now())
        assert not view.enabled
        with pytest.raises(ValidationError):
            await app.inspector.set_periodic("no-such-entry", enabled=False)
    finally:
        await engine.stop(grace=0)


async def test_task_types_of_every_live_instance(app: App) -> None:
    engine = app.engine()
    await engine.start()
    try:
        types = {view.name: view for view in await app.inspector.task_types(app.clock.now())}
    finally:
        await engine.stop(grace=0)
    sleep = types["time.sleep"]
    assert sleep.executor == "async"
    assert sleep.instances == [engine.instance]
    assert sleep.submittable
    assert sleep.max_attempts >= 1 and sleep.timeout > 0
