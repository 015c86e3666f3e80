"""Redis broker: what only Redis has (server checks, key layout, namespaces, pub/sub wake-ups).

Runs against the server at 127.0.0.1:6379; skipped with a reason if it does not answer,
unless CI=true. Every test works in fresh namespaces and drops them at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from taskengine.brokers import TaskFilter, open_broker
from taskengine.brokers.redis import RedisBroker
from taskengine.brokers.redis import admin as redis_admin
from taskengine.brokers.redis.server import check_config
from taskengine.clock import FakeClock
from taskengine.errors import BrokerUnavailable, ConfigurationError
from taskengine.model import OutcomeKind, WorkerInfo
from tests.brokers.support import T0, Tasks, outcome
from tests.redis_server import RedisServer

SERVER = "redis://127.0.0.1:6379/0"

Make = Callable[..., Awaitable[RedisBroker]]


def _namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def server() -> AsyncIterator[Redis]:
    """A plain client of the test server; skips (outside CI) if it does not answer."""
    client = Redis.from_url(SERVER, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"redis unreachable at {SERVER}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def make(server: Redis) -> AsyncIterator[Make]:
    """Start brokers (a fresh namespace unless given); drop their namespaces, then close."""
    opened: list[RedisBroker] = []

    async def make_one(namespace: str | None = None, **options: object) -> RedisBroker:
        broker = RedisBroker(SERVER, namespace=namespace or _namespace(), **options)  # type: ignore[arg-type]
        await broker.start()
        opened.append(broker)
        return broker

    yield make_one
    for broker in reversed(opened):
        await broker.drop_namespace()
        await broker.close()


async def _keys(server: Redis, namespace: str) -> list[bytes]:
    return [key async for key in server.scan_iter(match=f"*{namespace}*")]


async def _exercise(broker: RedisBroker, clock: FakeClock, tasks: Tasks) -> None:
    """Touch every kind of key: queued, scheduled, running, finished, paused, workers, leader."""
    now = clock.now()
    batch = [tasks(now, queue="q1", idempotency_key="k"), tasks(now, queue="q2")]
    await broker.enqueue([*batch, tasks(now, delay=60.0), tasks(now)], now)
    leases = await broker.reserve("w", 3, 30.0, now)
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, leases[0], now)], now)
    await broker.settle([outcome(OutcomeKind.DEAD, leases[1], now)], now)
    await broker.pause(["q3"])
    worker = WorkerInfo(
        id="w", instance="i", host="h", pid=1, state="idle", started_at=now, last_seen=now
    )
    await broker.record_workers([worker])
    assert await broker.leader("reaper", "me", 10.0, now)


async def test_every_key_of_a_namespace_shares_one_hash_tag(
    make: Make, server: Redis, tasks: Tasks
) -> None:
    namespace = _namespace()
    broker = await make(namespace)
    await _exercise(broker, FakeClock(T0), tasks)

    keys = await _keys(server, namespace)

    assert len(keys) > 10
    tag = f"{{te:{namespace}}}:".encode()
    assert all(key.startswith(tag) for key in keys), keys
    assert len({key_slot(key) for key in keys}) == 1


async def test_drop_namespace_deletes_every_key(make: Make, server: Redis, tasks: Tasks) -> None:
    namespace = _namespace()
    broker = await make(namespace)
    await _exercise(broker, FakeClock(T0), tasks)

    assert await broker.drop_namespace() > 10

    assert await _keys(server, namespace) == []


async def test_namespaces_are_isolated(make: Make, tasks: Tasks) -> None:
    one, two = await make(), await make()
    now = T0
    task = tasks(now, idempotency_key="same")
    await one.enqueue([task], now)
    await one.pause(["mail"])

    assert await two.reserve("w", 10, 30.0, now) == []
    assert await two.get([task.id]) == [None]
    assert await two.counts() == []
    assert await two.paused() == set()
    assert (await two.list_tasks(TaskFilter(), 10)).items == []
    [again] = await two.enqueue([tasks(now, idempotency_key="same")], now)
    assert again.created
    assert [lease.task_id for lease in await one.reserve("w", 10, 30.0, now)] == [task.id]


async def test_wait_for_work_wakes_on_enqueue_from_another_instance(
    make: Make, tasks: Tasks
) -> None:
    namespace = _namespace()
    waiter, producer = await make(namespace), await make(namespace)
    other = await make()  # another namespace: its enqueues must not wake the waiter
    await waiter.wait_for_work(0.01)  # drain anything pending

    started = time.monotonic()
    parked = asyncio.create_task(waiter.wait_for_work(30.0))
    await asyncio.sleep(0.05)
    await other.enqueue([tasks(T0)], T0)
    await asyncio.sleep(0.1)
    assert not parked.done(), "woken by another namespace"
    await producer.enqueue([tasks(T0)], T0)
    await asyncio.wait_for(parked, 5)

    assert time.monotonic() - started < 1.0


async def test_start_refuses_an_eviction_policy_that_drops_tasks(tmp_path: Path) -> None:
    # A server of the test's own: the shared one must keep its policy, as other tests (and
    # other pytest-xdist workers) start brokers on it meanwhile and would be refused.
    own = RedisServer(tmp_path)
    own.start()
    try:
        client = Redis.from_url(own.address)
        await client.config_set("maxmemory-policy", "allkeys-lru")
        await client.aclose()
        broker = RedisBroker(own.url(_namespace()))
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            await broker.start()
        await broker.close()
    finally:
        own.close()


def test_config_checks() -> None:
    with pytest.raises(ConfigurationError):
        check_config({"maxmemory-policy": "allkeys-lfu"})
    assert check_config({"maxmemory-policy": "volatile-lru", "save": ""}).durable is False
    aof = check_config({"appendonly": "yes", "appendfsync": "everysec", "save": ""})
    assert aof.durable
    assert "everysec" in aof.window
    rdb = check_config({"appendonly": "no", "save": "3600 1 300 100"})
    assert rdb.durable
    assert "RDB" in rdb.window
    assert "restart loses tasks" in check_config({"appendonly": "no", "save": ""}).window


async def test_capabilities_follow_the_server(make: Make, server: Redis) -> None:
    broker = await make()
    config = await server.config_get("*")
    expected = config.get("appendonly") == "yes" or bool(config.get("save"))

    assert broker.capabilities.durable is expected
    assert broker.capabilities.shared
    assert broker.capabilities.push_wakeup


async def test_open_broker_reads_the_namespace_from_the_url(server: Redis, tasks: Tasks) -> None:
    namespace = _namespace()
    broker = open_broker(f"{SERVER}?namespace={namespace}&max_depth=7")
    assert isinstance(broker, RedisBroker)
    await broker.start()
    try:
        await broker.enqueue([tasks(T0)], T0)
        assert broker.max_depth == 7
        assert await _keys(server, namespace)
    finally:
        await broker.drop_namespace()
        await broker.close()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        RedisBroker(SERVER, namespace="has{brace}")
    with pytest.raises(ConfigurationError):
        RedisBroker(SERVER, namespace="trailing.newline\n")
    with pytest.raises(ConfigurationError):
        RedisBroker(SERVER, namespace="x", socket_timeout="5")  # not in the URL: a typo?
    RedisBroker(f"{SERVER}?socket_timeout=5", namespace="x", socket_timeout="5")


async def test_unreachable_server_is_broker_unavailable() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", namespace="x")
    with pytest.raises(BrokerUnavailable):
        await broker.start()
    with pytest.raises(BrokerUnavailable):
        await broker.reserve("w", 1, 30.0, T0)


async def test_closed_broker_is_broker_unavailable(make: Make) -> None:
    broker = await make()
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await broker.counts()
    with pytest.raises(BrokerUnavailable):
        await broker.wait_for_work(0.01)
    await broker.start()  # reopening works; the fixture drops and closes it


async def test_scripts_are_reloaded_after_script_flush(
    make: Make, server: Redis, tasks: Tasks
) -> None:
    broker = await make()
    await server.script_flush()

    [result] = await broker.enqueue([tasks(T0)], T0)

    assert result.created
    assert len(await broker.reserve("w", 5, 30.0, T0)) == 1


async def test_list_pages_stay_correct_when_the_scan_budget_runs_out(
    make: Make, tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = await make()
    batch = [tasks(T0, queue="rare" if i % 7 == 0 else "common") for i in range(40)]
    await broker.enqueue(batch, T0)
    monkeypatch.setattr(redis_admin, "LIST_BUDGET", 5)
    rare = TaskFilter(queues=frozenset({"rare"}))

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        page = await broker.list_tasks(rare, 2, cursor)
        seen.extend(r.id for r in page.items)
        if (cursor := page.next_cursor) is None:
            break

    assert seen == sorted((t.id for t in batch if t.queue == "rare"), reverse=True)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://127.0.0.1:6379/0",
        "rediss+cluster://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?cluster=true",
    ],
)
def test_a_cluster_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="Redis Cluster is not supported"):
        open_broker(url)


def _cluster_port() -> int:
    """A free port for a cluster-mode redis-server: it also listens 10,000 above it (the
    cluster bus), so it refuses ports above 55,535, a fifth of the ephemeral range."""
    for _ in range(200):
        with socket.socket() as probe, socket.socket() as bus:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
            if port > 55_535:
                continue
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
            return port
    raise AssertionError("no free port pair for a cluster-mode redis-server")


async def test_a_server_in_cluster_mode_is_refused_at_start(tmp_path: Path) -> None:
    # A real redis-server with cluster mode on: a plain client would start on it and then
    # fail with MOVED on every key another node serves, so start refuses it up front.
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    port = _cluster_port()
    node = await asyncio.create_subprocess_exec(
        *(binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"),
        *("--cluster-config-file", str(tmp_path / "nodes.conf"), "--dir", str(tmp_path)),
        *("--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0?namespace={_namespace()}"
        client = Redis.from_url(url.split("?")[0])
        deadline = time.monotonic() + 30.0
        while True:
            try:
                await client.ping()
                break
            except (RedisConnectionError, OSError):
                assert node.returncode is None, f"the cluster-mode redis-server exited on {port}"
                assert time.monotonic() < deadline, "the cluster-mode redis-server did not start"
                await asyncio.sleep(0.05)
        await client.aclose()
        broker = RedisBroker(url)
        with pytest.raises(ConfigurationError, match="Redis Cluster is not supported"):
            await broker.start()
        await broker.close()
    finally:
        if node.returncode is None:
            node.terminate()
        await asyncio.wait_for(node.wait(), 30.0)


async def test_an_enqueue_sends_the_batch_as_one_packed_value(
    make: Make, server: Redis, tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch costs the server one argument to parse, not eleven per task; what it stores
    reads back as before (the hash fields are those of the per-task arguments)."""
    broker = await make()
    sent: list[tuple[object, ...]] = []
    scripts = broker._scripts
    assert scripts is not None
    run = scripts.run

    async def spy(name: str, *args: object) -> object:
        sent.append((name, *args))
        return await run(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(scripts, "run", spy)
    small = [tasks(T0, idempotency_key="k1")]
    large = [tasks(T0, queue=f"q{n % 3}", priority=n % 3) for n in range(500)]

    for batch in (small, large):
        await broker.enqueue(batch, T0)

    # name, now, max_depth, the batch, the locks ('' = none), whose clock: whatever the size
    assert [len(call) for call in sent] == [6, 6]
    records = await broker.get([small[0].id, large[-1].id])
    assert [r.idempotency_key if r else None for r in records] == ["k1", None]
    assert [r.queue if r else None for r in records] == ["default", "q1"]
    fields = await server.hmget(
        broker.keys.prefix + f"task:{small[0].id}", "run_at", "created_at", "attempt"
    )
    assert fields == [repr(T0).encode(), repr(T0).encode(), b"0"]


async def test_a_settle_sends_the_batch_as_one_packed_value(
    make: Make, server: Redis, tasks: Tasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settle costs the server one argument to parse, not nine per outcome; the history line
    the script writes carries the stored attempt number, also past one byte's worth (the
    script sets it in the packed line without decoding it)."""
    broker = await make()
    sent: list[tuple[object, ...]] = []
    scripts = broker._scripts
    assert scripts is not None
    run = scripts.run

    async def spy(name: str, *args: object) -> object:
        sent.append((name, *args))
        return await run(name, *args)  # type: ignore[arg-type]

    batch = [tasks(T0, max_attempts=1000) for _ in range(3)]
    await broker.enqueue(batch, T0)
    for task, attempt in zip(batch, (0, 127, 300), strict=True):
        await server.hset(broker.keys.task(task.id), "attempt", attempt)
    leases = await broker.reserve("w1", 3, 30.0, T0)
    monkeypatch.setattr(scripts, "run", spy)

    applied = await broker.settle(
        [outcome(OutcomeKind.RETRY, lease, T0, run_at=T0 + 60) for lease in leases], T0
    )

    assert applied == [True, True, True]
    assert [(name, len(call)) for name, *call in sent] == [("settle", 2)]
    records = await broker.get([task.id for task in batch])
    assert [[h.attempt for h in r.history] if r else None for r in records] == [
        [1],
        [128],
        [301],
    ]
