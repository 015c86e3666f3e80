"""The once-a-second sampler: depth per priority, busy fractions, efficiency, history file."""

from __future__ import annotations

from pathlib import Path

from taskengine.brokers import open_broker
from taskengine.clock import FakeClock
from taskengine.metrics import Metrics
from taskengine.model import Lease, new_task
from taskengine.model.task import queued_record
from taskengine.runtime.status import EngineStatus, worker_statuses
from taskengine.runtime.workers import Worker
from taskengine.telemetry.sampler import Sampler, StatusAt

NOW = 1_700_000_000.0


def _pool(*slots: Worker, waiting: int = 0) -> StatusAt:
    """The status of a pool of `slots` with `waiting` leases buffered, as the worker builds it."""

    def status(now: float) -> EngineStatus:
        return EngineStatus(
            instance="i",
            at=now,
            size=len(slots),
            busy=sum(1 for s in slots if s.busy),
            buffered=waiting,
            overrunning_threads=0,
            workers=worker_statuses(slots, "i", "host", 1, now),
        )

    return status


def _lease(now: float) -> Lease:
    record = queued_record(new_task("demo.echo", {}, now=now), now)
    return Lease(record=record, token="t", expires_at=now + 30)


async def test_depth_per_priority_running_and_throughput(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    broker = open_broker("memory://")
    await broker.start()
    try:
        tasks = [
            new_task("a", {}, now=NOW, priority="HIGH"),
            new_task("a", {}, now=NOW, priority="LOW"),
            new_task("a", {}, now=NOW, priority="LOW"),
        ]
        await broker.enqueue(tasks, NOW)
        await broker.reserve("w", 1, 30, NOW)  # the HIGH one runs
        metrics = Metrics()
        metrics.throughput.add(NOW + 0.5, 4, 1)
        sampler = Sampler(metrics, broker, clock, history_path=tmp_path / "h.json")
        clock.advance(1.2)
        point = await sampler.run_once()
    finally:
        await broker.close()
    assert point.t == NOW
    assert point.depth == {"HIGH": 0, "NORMAL": 0, "LOW": 2}
    assert point.running == 1
    assert (point.ok, point.failed) == (4, 1)
    assert point.busy == {}  # no pool in this process
    assert point.rss_bytes > 0
    assert sampler.history.points[-1] is point


async def test_busy_fractions_and_efficiency() -> None:
    clock = FakeClock(NOW)
    broker = open_broker("memory://")
    await broker.start()
    busy, idle = Worker("i", 1, NOW), Worker("i", 2, NOW)
    pool = _pool(busy, idle, waiting=3)
    sampler = Sampler(Metrics(), broker, clock, status=pool)
    try:
        first = await sampler.run_once()
        busy.begin(_lease(NOW), NOW)
        clock.advance(0.5)
        busy.end(clock.now())  # busy half of the second
        clock.advance(0.5)
        second = await sampler.run_once()
        busy.begin(_lease(clock.now()), clock.now())
        clock.advance(1.0)
        third = await sampler.run_once()
    finally:
        await broker.close()
    assert first.busy == {"i/w1": 0.0, "i/w2": 0.0}
    assert second.busy == {"i/w1": 0.5, "i/w2": 0.0}
    assert third.busy == {"i/w1": 1.0, "i/w2": 0.0}
    # tasks waited all along, so idle worker time counts against efficiency
    assert 0.0 < sampler.efficiency() < 0.5


async def test_efficiency_is_full_when_nothing_waits() -> None:
    clock = FakeClock(NOW)
    broker = open_broker("memory://")
    await broker.start()
    sampler = Sampler(Metrics(), broker, clock, status=_pool(Worker("i", 1, NOW)))
    try:
        for _ in range(3):
            clock.advance(1)
            await sampler.run_once()
    finally:
        await broker.close()
    assert sampler.efficiency() == 1.0


async def test_history_is_saved_every_ten_points_and_reloaded(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    broker = open_broker("memory://")
    await broker.start()
    path = tmp_path / "metrics-history.json"
    sampler = Sampler(Metrics(), broker, clock, history_path=path)
    try:
        for _ in range(9):
            clock.advance(1)
            await sampler.run_once()
        assert not path.exists()
        clock.advance(1)
        await sampler.run_once()
        assert path.exists()
    finally:
        await broker.close()
    again = Sampler(Metrics(), broker, clock, history_path=path)
    assert again.load_history() == 10
    assert [p.t for p in again.history.points] == [NOW + s for s in range(10)]
