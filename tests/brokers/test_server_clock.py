"""Redis and PostgreSQL with `server_clock` on (their default): hosts whose clocks disagree
get the same lease and readiness decisions, because the server's clock makes them (ADR 0006).

The conformance suite runs these brokers with `server_clock=false`, so its fake clock drives
them; here each caller passes its own skewed `now`, as hosts with bad clocks would. SQLite and
memory serve one host, whose one clock every caller reads: they have no such option.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from taskengine.brokers import BrokerBackend, open_broker
from taskengine.brokers.server_clock import ServerClock
from taskengine.errors import ConfigurationError
from taskengine.model import Lease, LeaseStatus
from tests.brokers.support import SERVICE_URLS, Tasks, drop_storage, fill_url, started, url_id

BOUND = 30.0  # seconds a wait may take on a loaded machine
LEASE = 20.0  # what is left of a 30 s lease just before its heartbeat (every 10 s)

Make = Callable[[], Awaitable[BrokerBackend]]


def _wall() -> float:
    """This host's clock: the one a host without skew would pass."""
    return time.time()


@pytest.fixture(params=SERVICE_URLS, ids=url_id)
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """Start brokers with the server's clock on, all on one namespace or schema (as processes
    on several hosts would be); drop it and close them after the test."""
    url = fill_url(request.param.replace("server_clock=false", "server_clock=true"), tmp_path)
    opened: list[BrokerBackend] = []

    async def make_one() -> BrokerBackend:
        broker = await started(url)
        opened.append(broker)
        return broker

    yield make_one
    for broker in reversed(opened):
        await drop_storage(broker)
        await broker.close()


async def test_a_reaper_ahead_does_not_take_a_healthy_lease(make: Make) -> None:
    """A reaper whose clock is 25 s ahead finds no expired lease while the holder's lease
    has 20 s left; the holder still holds it and extends it."""
    worker, reaper = await make(), await make()
    tasks = Tasks()
    now = _wall()
    await worker.enqueue([tasks(now)], now)
    [lease] = await worker.reserve("w", 1, LEASE, now)

    assert await reaper.requeue_expired(_wall() + 25.0, 100) == []

    assert await worker.extend([lease], LEASE, _wall()) == [LeaseStatus.HELD]
    [record] = await reaper.get([lease.task_id])
    assert record is not None
    assert record.state == "running"
    assert record.attempt == 1


async def test_a_worker_behind_keeps_its_lease_from_a_punctual_reaper(make: Make) -> None:
    """A worker 25 s behind takes and extends a lease that a punctual reaper still sees
    held: the expiry is set by the server's clock, not the holder's."""
    worker, reaper = await make(), await make()
    tasks = Tasks()
    now = _wall()
    await reaper.enqueue([tasks(now)], now)
    [lease] = await worker.reserve("w", 1, LEASE, _wall() - 25.0)
    assert await worker.extend([lease], LEASE, _wall() - 25.0) == [LeaseStatus.HELD]

    assert await reaper.requeue_expired(_wall(), 100) == []
    assert await worker.extend([lease], LEASE, _wall() - 25.0) == [LeaseStatus.HELD]


async def test_workers_with_skewed_clocks_agree_on_when_a_task_is_due(make: Make) -> None:
    """A task due in a few seconds by the server's clock is taken by neither a worker 100 s
    ahead nor one 100 s behind until then, and then by one of them, once."""
    ahead, behind, producer = await make(), await make(), await make()
    tasks = Tasks()
    now = _wall()
    task = tasks(now, delay=3.0)
    await producer.enqueue([task], now)

    early = await ahead.reserve("ahead", 5, LEASE, _wall() + 100.0)
    early += await behind.reserve("behind", 5, LEASE, _wall() - 100.0)
    assert early == []  # by the server's clock it is due 3 s after it was submitted

    taken: list[Lease] = []
    async with asyncio.timeout(BOUND):
        while not taken:
            taken += await ahead.reserve("ahead", 5, LEASE, _wall() + 100.0)
            taken += await behind.reserve("behind", 5, LEASE, _wall() - 100.0)
            await asyncio.sleep(0.05)
    assert [lease.task_id for lease in taken] == [task.id]
    started_at = taken[0].record.started_at
    assert started_at is not None
    assert started_at >= task.run_at  # the server's clock said it was due


async def test_a_producer_ahead_delays_nothing_and_hastens_nothing(make: Make) -> None:
    """A producer 100 s ahead: its task meant to run at once runs at once (recorded as
    created when the server received it, not in the server's future), and its task delayed by
    10 s is not taken early by any worker, whatever that worker's clock says."""
    producer, worker = await make(), await make()
    tasks = Tasks()
    skewed = _wall() + 100.0
    now_task, later_task = tasks(skewed), tasks(skewed, delay=10.0)
    await producer.enqueue([now_task, later_task], skewed)
    due_later = _wall() + 10.0  # by this host's clock, which is the server's (one host)

    # Each broker reads the server's time itself, off by up to half that reading's round
    # trip (ADR 0006): on a loaded machine the worker's reading may trail the producer's by
    # a fraction of a second, and the task due "now" is then taken at a later call.
    taken: list[Lease] = []
    async with asyncio.timeout(BOUND):
        while now_task.id not in {lease.task_id for lease in taken}:
            asked_at = _wall()
            taken += await worker.reserve("w", 5, LEASE, asked_at - 100.0)
            taken += await worker.reserve("w", 5, LEASE, asked_at + 200.0)
            if later_task.id in {lease.task_id for lease in taken}:
                assert asked_at >= due_later - 1.0, "the delayed task was taken early"
            await asyncio.sleep(0.05)

    assert taken[0].task_id == now_task.id  # the one due first comes first
    assert taken[0].record.created_at <= _wall() + 1.0  # not the producer's future


async def test_a_leader_behind_is_not_overthrown_by_a_contender_ahead(make: Make) -> None:
    """Leadership held by a host 25 s behind is not taken by one 25 s ahead while it lasts."""
    holder, contender = await make(), await make()

    assert await holder.leader("reaper", "behind", 20.0, _wall() - 25.0) is True
    assert await contender.leader("reaper", "ahead", 20.0, _wall() + 25.0) is False
    assert await holder.leader("reaper", "behind", 20.0, _wall() - 25.0) is True


class _Server:
    """A server clock that reads `time` and counts its readings."""

    def __init__(self) -> None:
        self.time = 5_000.0
        self.reads = 0

    async def read(self) -> float:
        self.reads += 1
        return self.time


async def test_the_server_time_is_carried_forward_and_read_again_when_stale() -> None:
    server, mono = _Server(), [100.0]
    clock = ServerClock(server.read, refresh=30.0, monotonic=lambda: mono[0])

    assert await clock.now() == 5_000.0  # the first call reads it
    mono[0] += 10.0
    server.time += 99.0  # the server's clock is not read again before the refresh
    assert await clock.now() == 5_010.0
    assert server.reads == 1
    mono[0] += 20.0
    assert await clock.now() == 5_099.0  # stale: read again
    assert server.reads == 2


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?server_clock=maybe",
        "postgresql://postgres@127.0.0.1:5432/test?server_clock=maybe",
    ],
    ids=url_id,
)
def test_server_clock_must_be_true_or_false(url: str) -> None:
    with pytest.raises(ConfigurationError, match="server_clock"):
        open_broker(url)


SKEW = 0.5  # seconds one process's estimate of the server's time is off (0.1-0.2 s seen)


async def _estimate_off_by(broker: BrokerBackend, offset: float) -> None:
    """Make `broker` estimate the server's time `offset` seconds off (as a reading taken
    across a slow round trip would), through the broker's own reading of the server's time."""
    read = broker._server_time  # type: ignore[attr-defined]

    async def skewed() -> float:
        return float(await read()) + offset

    broker._clock = ServerClock(skewed)  # type: ignore[attr-defined]


@pytest.fixture(params=[u for u in SERVICE_URLS if not u.startswith("nats")], ids=url_id)
async def make_timed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    """As `make`, for the brokers that read the server's time (Redis, PostgreSQL); NATS
    stamps readiness with the server's own message times (no estimate to skew)."""
    url = fill_url(request.param.replace("server_clock=false", "server_clock=true"), tmp_path)
    opened: list[BrokerBackend] = []

    async def make_one() -> BrokerBackend:
        broker = await started(url)
        opened.append(broker)
        return broker

    yield make_one
    for broker in reversed(opened):
        await drop_storage(broker)
        await broker.close()


@pytest.mark.parametrize(("producer_off", "worker_off"), [(SKEW, 0.0), (0.0, -SKEW)])
async def test_a_task_to_run_at_once_is_reserved_at_once_whatever_the_estimates(
    make_timed: Make, producer_off: float, worker_off: float
) -> None:
    """Readiness is judged by the server's clock itself, not by each process's estimate of
    it: a task enqueued to run at once by a producer whose estimate is ahead (or taken by a
    worker whose estimate is behind) is reserved by the worker's first call, not half a
    second later at a later poll."""
    producer, worker = await make_timed(), await make_timed()
    await _estimate_off_by(producer, producer_off)
    await _estimate_off_by(worker, worker_off)
    tasks = Tasks()
    now = _wall() + producer_off  # the producer's idea of now, as its app would stamp it
    task = tasks(now)
    await producer.enqueue([task], now)

    [lease] = await worker.reserve("w", 5, LEASE, _wall() + worker_off)

    assert lease.task_id == task.id
    started_at = lease.record.started_at
    assert started_at is not None
    assert lease.record.created_at <= started_at  # not created in the server's future
    assert lease.expires_at == pytest.approx(started_at + LEASE)
