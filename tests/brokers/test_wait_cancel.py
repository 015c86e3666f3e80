"""A stop that cancels `wait_for_work` just as work arrives still stops it.

On Python 3.11, `asyncio.wait_for` returns the inner result and swallows the cancellation when
both land in the same loop iteration; a fetcher waiting that way never ended, and an engine
stopped right after a submit hung in `Fetcher.stop` (seen: examples/myapp.py on SQLite)."""

from __future__ import annotations

import asyncio

import pytest

from taskengine.brokers.memory import MemoryBroker
from taskengine.brokers.waiting import wait_event
from tests.brokers.support import T0, Tasks


async def _blocked(task: asyncio.Task[None]) -> None:
    for _ in range(10):  # a few loop turns: the waiter reaches its Event.wait
        await asyncio.sleep(0)
    assert not task.done()


async def test_a_cancel_as_work_arrives_cancels_the_wait_on_memory() -> None:
    broker = MemoryBroker()
    await broker.start()
    waiter = asyncio.create_task(broker.wait_for_work(60.0))
    await _blocked(waiter)
    await broker.enqueue([Tasks()(T0)], T0)  # sets the work event (no await inside)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_wait_event_reports_set_or_timed_out_and_never_swallows_a_cancel() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.001) is False
    event.set()
    assert await wait_event(event, 60.0) is True
    event.clear()
    waiter = asyncio.create_task(wait_event(event, 60.0))
    await _blocked(waiter)
    event.set()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
