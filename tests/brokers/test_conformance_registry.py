"""Conformance: worker registry, leader election and wake-ups."""

from __future__ import annotations

import asyncio
import time

from msgspec.structs import replace

from taskengine.brokers import BrokerBackend
from taskengine.clock import FakeClock
from taskengine.model import WorkerInfo
from tests.brokers.support import Tasks

PROMPT = 1.0  # a generous bound for "promptly": wake-ups are expected within milliseconds


def _worker(worker_id: str, last_seen: float, **kw: object) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        instance="inst-1",
        host="host-a",
        pid=4242,
        state="idle",
        started_at=last_seen - 100,
        last_seen=last_seen,
        **kw,
    )  # type: ignore[arg-type]


async def test_workers_record_replace_forget(broker: BrokerBackend, clock: FakeClock) -> None:
    now = clock.now()
    b, a, c = _worker("w-b", now), _worker("w-a", now - 30), _worker("w-c", now - 5)
    await broker.record_workers([b, a, c])

    assert await broker.workers(now - 60) == [a, b, c]

    busy = replace(
        b, state="busy", current_task="T1", processed=7, busy_seconds=2.5, last_seen=now + 1
    )
    await broker.record_workers([busy])
    assert await broker.workers(now - 60) == [a, busy, c]

    await broker.forget_workers(["w-a", "never-seen"])
    assert await broker.workers(now - 60) == [busy, c]


async def test_workers_seen_since_is_inclusive(broker: BrokerBackend, clock: FakeClock) -> None:
    now = clock.now()
    old, edge, fresh = _worker("1", now - 61), _worker("2", now - 60), _worker("3", now)
    await broker.record_workers([fresh, old, edge])

    assert await broker.workers(now - 60) == [edge, fresh]
    assert await broker.workers(now + 1) == []


async def test_leader_one_holder_at_a_time(broker: BrokerBackend, clock: FakeClock) -> None:
    now = clock.now()
    assert await broker.leader("reaper", "a", 10.0, now) is True
    assert await broker.leader("reaper", "b", 10.0, now) is False
    # another duty is independent
    assert await broker.leader("cron", "b", 10.0, now) is True
    # the holder renews; the lease runs from the renewal
    assert await broker.leader("reaper", "a", 10.0, clock.advance(8)) is True
    assert await broker.leader("reaper", "b", 10.0, clock.advance(8)) is False
    # after the ttl without renewal, another takes over and the old holder is out
    assert await broker.leader("reaper", "b", 10.0, clock.advance(3)) is True
    assert await broker.leader("reaper", "a", 10.0, clock.now()) is False
    assert await broker.leader("reaper", "b", 10.0, clock.advance(1)) is True


async def test_leader_resign(broker: BrokerBackend, clock: FakeClock) -> None:
    now = clock.now()
    assert await broker.leader("reaper", "a", 60.0, now)
    await broker.resign("reaper", "b")  # not the holder: no effect
    assert await broker.leader("reaper", "b", 60.0, now) is False

    await broker.resign("reaper", "a")

    assert await broker.leader("reaper", "b", 60.0, now) is True
    await broker.resign("unknown", "a")


async def test_wait_for_work_wakes_on_enqueue(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    async def producer() -> None:
        await asyncio.sleep(0.05)  # let the waiter park first
        await broker.enqueue([tasks(clock.now())], clock.now())

    started = time.monotonic()
    waiter = asyncio.create_task(broker.wait_for_work(30.0))
    await producer()
    await asyncio.wait_for(waiter, PROMPT + 5)

    assert time.monotonic() - started < PROMPT, "wait_for_work did not wake on enqueue"


async def test_wait_for_work_returns_after_timeout(broker: BrokerBackend) -> None:
    # drain a wake-up that may be pending from start()
    await broker.wait_for_work(0.01)
    started = time.monotonic()

    await asyncio.wait_for(broker.wait_for_work(0.2), 10)

    assert time.monotonic() - started < 0.2 + PROMPT


async def test_instance_reports_replace_and_expire(broker: BrokerBackend, clock: FakeClock) -> None:
    now = clock.now()
    await broker.record_instance("inst-b", b"b1", now, 30.0)
    await broker.record_instance("inst-a", b"\x00a1\xff", now - 20, 30.0)

    reports = await broker.instances(now)
    assert [(r.instance, r.data) for r in reports] == [("inst-a", b"\x00a1\xff"), ("inst-b", b"b1")]
    assert [r.expires_at for r in reports] == [now + 10, now + 30]

    await broker.record_instance("inst-b", b"b2", now + 5, 30.0)  # the next heartbeat replaces
    assert [(r.instance, r.data) for r in await broker.instances(now + 5)] == [
        ("inst-a", b"\x00a1\xff"),
        ("inst-b", b"b2"),
    ]
    # inst-a stopped publishing: it drops out once its report expires (the bound is inclusive)
    assert [r.instance for r in await broker.instances(now + 10)] == ["inst-a", "inst-b"]
    assert [r.instance for r in await broker.instances(now + 11)] == ["inst-b"]
    assert await broker.instances(now + 36) == []


async def test_an_expired_report_is_dropped_from_storage(
    broker: BrokerBackend, clock: FakeClock
) -> None:
    now = clock.now()
    await broker.record_instance("gone", b"x", now - 100, 10.0)
    await broker.record_instance("live", b"y", now, 10.0)  # drops "gone" in the same call
    # even asked about a time when "gone" was live, its report is no longer stored
    assert [r.instance for r in await broker.instances(now - 95)] == ["live"]
