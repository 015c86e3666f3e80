"""Conformance: capability flags, durability, and no double claim across OS processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from taskengine.brokers import BrokerBackend, Capabilities
from taskengine.clock import FakeClock
from taskengine.model import OutcomeKind, WorkerInfo
from tests.brokers.support import MakeBroker, Tasks, outcome, started

# What the design promises of each known backend; a new backend adds its line here.
EXPECTED_FLAGS: dict[str, dict[str, bool]] = {
    "memory": {"durable": False, "shared": False},
    "sqlite": {"durable": True, "shared": True, "push_wakeup": True},
    "redis": {"shared": True, "push_wakeup": True},
    "postgresql": {"shared": True, "push_wakeup": True},
    "nats": {"durable": True, "shared": True, "push_wakeup": True},
}


def test_capabilities_flags(broker: BrokerBackend, broker_url: str) -> None:
    scheme = broker_url.split(":", 1)[0]
    caps = broker.capabilities

    assert isinstance(caps, Capabilities)
    for flag, expected in EXPECTED_FLAGS.get(scheme, {}).items():
        assert getattr(caps, flag) is expected, f"{scheme}: {flag} should be {expected}"


async def test_start_and_close_are_idempotent(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    await broker.start()
    now = clock.now()
    task = tasks(now)
    await broker.enqueue([task], now)
    [record] = await broker.get([task.id])
    assert record is not None


async def test_durable_broker_keeps_everything_across_reopen(
    broker: BrokerBackend,
    broker_url: str,
    clock: FakeClock,
    tasks: Tasks,
    make_broker: MakeBroker,
) -> None:
    if not broker.capabilities.durable:
        pytest.skip("not durable: capabilities.durable is False")
    now = clock.now()
    batch = [*tasks.many(6, now, idempotency_key=None), tasks(now, delay=60.0, idempotency_key="k")]
    await broker.enqueue(batch, now)
    leases = await broker.reserve("w", 5, 30.0, now)
    await broker.settle(
        [
            outcome(OutcomeKind.SUCCEEDED, leases[0], now, data={"x": [1, 2]}),
            outcome(OutcomeKind.RETRY, leases[1], now, run_at=now + 9),
            outcome(OutcomeKind.DEAD, leases[2], now),
        ],
        now,
    )
    await broker.cancel([leases[3].task_id], now)
    await broker.pause(["held"])
    worker = WorkerInfo(
        id="w", instance="i", host="h", pid=1, state="busy", started_at=now, last_seen=now
    )
    await broker.record_workers([worker])
    before = await broker.get([t.id for t in batch])
    await broker.close()

    reopened = await make_broker(broker_url)

    assert await reopened.get([t.id for t in batch]) == before
    assert await reopened.paused() == {"held"}
    assert await reopened.workers(now) == [worker]
    dup = tasks(now, idempotency_key="k")
    [result] = await reopened.enqueue([dup], now)
    assert not result.created
    assert result.id == batch[-1].id
    # the running lease survives too: its token still settles
    assert await reopened.settle([outcome(OutcomeKind.SUCCEEDED, leases[4], now)], now) == [True]


def _claim_all(url: str, now: float, start: object) -> list[str]:
    """In a child process: reserve until nothing is left; return the claimed ids."""

    async def run() -> list[str]:
        broker = await started(url)
        claimed: list[str] = []
        try:
            while leases := await broker.reserve(f"pid-{os.getpid()}", 4, 300.0, now):
                claimed.extend(lease.task_id for lease in leases)
        finally:
            await broker.close()
        return claimed

    start.wait()  # type: ignore[attr-defined]
    return asyncio.run(run())


@pytest.mark.slow
async def test_processes_never_double_claim(
    broker: BrokerBackend, broker_url: str, clock: FakeClock, tasks: Tasks
) -> None:
    if not broker.capabilities.shared:
        pytest.skip("not shared: capabilities.shared is False (one process only)")
    now = clock.now()
    batch = tasks.many(300, now)
    await broker.enqueue(batch, now)
    context = multiprocessing.get_context("spawn")
    processes = 4

    with context.Manager() as manager, ProcessPoolExecutor(processes, mp_context=context) as pool:
        start = manager.Event()
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(pool, _claim_all, broker_url, now, start) for _ in range(processes)
        ]
        await asyncio.sleep(0.5)  # let the children start before releasing them together
        start.set()
        results = await asyncio.wait_for(asyncio.gather(*futures), 120)

    claimed = [task_id for ids in results for task_id in ids]
    assert len(claimed) == len(set(claimed)), "a task was claimed by two processes"
    assert set(claimed) == {t.id for t in batch}
