"""Redis broker: delayed tasks become due in bounded steps, and a busy server is unavailable.

Runs against the server at 127.0.0.1:6379 (skipped with a reason if it does not answer, unless
CI=true); the BUSY test starts its own private redis-server, so a script that blocks the
server never blocks anyone else's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from taskengine.brokers.redis import RedisBroker
from taskengine.brokers.redis.broker import PROMOTE_STEP
from taskengine.brokers.redis.keys import FAMILIES
from taskengine.brokers.redis.scripts import unavailable
from taskengine.clock import FakeClock
from taskengine.errors import BrokerUnavailable
from tests.brokers.support import T0, Tasks

SERVER = "redis://127.0.0.1:6379/0"
BOUND = 30.0  # seconds any wait in these tests may take on a loaded machine

Make = Callable[..., Awaitable[RedisBroker]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """Start brokers on `url` (the shared server by default) in fresh namespaces; drop the
    namespaces and close the brokers after the test."""
    opened: list[RedisBroker] = []

    async def make_one(url: str = SERVER, server_clock: bool = False) -> RedisBroker:
        # the tests' fake clock drives it, not the server's, unless told
        namespace = f"t{uuid.uuid4().hex[:12]}"
        broker = RedisBroker(url, namespace=namespace, server_clock=server_clock)
        try:
            await broker.start()
        except BrokerUnavailable as exc:
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"redis unreachable at {url}: {exc}")
        opened.append(broker)
        return broker

    yield make_one
    for broker in reversed(opened):
        try:
            await broker.drop_namespace()
        finally:
            await broker.close()


async def test_many_due_tasks_are_promoted_over_several_reserves(make: Make) -> None:
    """Each reserve moves a bounded number of newly due tasks to the ready set, still returns
    a full batch while others wait, and over several calls every task is taken exactly once."""
    broker = await make()
    clock, tasks = FakeClock(T0), Tasks()
    count = 3 * PROMOTE_STEP + 17
    delayed = tasks.many(count, clock.now(), delay=60.0)
    await broker.enqueue(delayed, clock.now())
    now = clock.advance(61)
    client = broker._redis()
    sched = broker.keys.prefix + FAMILIES["sched_key"] + "default"

    [first] = await broker.reserve("w", 1, 30.0, now)

    assert await client.zcard(sched) == count - PROMOTE_STEP  # the rest wait for later calls
    taken = [first.task_id]
    sizes = []
    while leases := await broker.reserve("w", 100, 30.0, now):
        sizes.append(len(leases))
        taken += [lease.task_id for lease in leases]
    assert all(size == 100 for size in sizes[:-1])  # a full batch while tasks wait
    assert sorted(taken) == sorted(t.id for t in delayed)  # none lost, none taken twice
    assert len(taken) == len(set(taken))
    assert await client.zcard(sched) == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def private_server() -> AsyncIterator[str]:
    """A redis-server of this test's own (no persistence, BUSY after 50 ms of script), so a
    script that blocks it disturbs nobody; stopped by its pid after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        binary,
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--busy-reply-threshold", "50",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    try:
        async with asyncio.timeout(BOUND):
            while True:
                try:
                    await client.ping()
                    break
                except (RedisConnectionError, OSError):
                    await asyncio.sleep(0.05)
        yield url
    finally:
        await client.aclose()
        process.terminate()
        await process.wait()


BUSY_LOOP = """
local start = tonumber(redis.call('TIME')[1])
while tonumber(redis.call('TIME')[1]) - start < tonumber(ARGV[1]) do end
return 1
"""


async def test_a_busy_server_is_unavailable(private_server: str, make: Make) -> None:
    """While a long script blocks the server (it answers BUSY), a broker call raises
    BrokerUnavailable, as for any server that cannot serve now; the broker works after."""
    broker = await make(private_server)
    clocked = await make(private_server, server_clock=True)
    clock, tasks = FakeClock(T0), Tasks()
    await broker.enqueue([tasks(clock.now())], clock.now())
    blocker = Redis.from_url(private_server)
    probe = Redis.from_url(private_server)
    busy = asyncio.ensure_future(blocker.eval(BUSY_LOOP, 0, int(BOUND)))
    try:
        async with asyncio.timeout(BOUND):  # until the server answers BUSY to anyone
            while True:
                try:
                    await probe.ping()
                except ResponseError as exc:
                    if str(exc).startswith("BUSY"):
                        break
                    raise
                await asyncio.sleep(0.01)

        with pytest.raises(BrokerUnavailable, match="busy"):
            await broker.reserve("w", 1, 30.0, clock.now())
        with pytest.raises(BrokerUnavailable, match="busy"):  # reading the server's time
            await clocked._server_time()
    finally:
        with contextlib.suppress(ResponseError):  # not running any more: nothing to kill
            await probe.script_kill()
        await asyncio.gather(busy, return_exceptions=True)  # the killed script's error
        await blocker.aclose()
        await probe.aclose()

    assert len(await broker.reserve("w", 1, 30.0, clock.now())) == 1


def test_busy_and_only_busy_is_unavailable() -> None:
    busy = "BUSY Redis is busy running a script. You can only call SCRIPT KILL"
    in_pipeline = f"Command # 1 (TIME) of pipeline caused error: ('{busy}',)"
    wrong = "WRONGTYPE Operation against a key holding the wrong kind of value"

    for text in (busy, in_pipeline):
        mapped = unavailable(ResponseError(text))
        assert isinstance(mapped, BrokerUnavailable)
        assert "busy" in str(mapped)
    assert unavailable(ResponseError(wrong)) is None
    assert unavailable(ResponseError(f"ERR user script said {busy!r}")) is None
