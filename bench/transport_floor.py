"""What the bare transports cost the server per message, against what our Redis broker costs
per task: the floor under any broker built on them (ADR 0032).

    python -m bench.transport_floor [--messages 20000]

Each on a server of its own, started for the run (nothing else loads it): Redis Streams (XADD in
pipelines of 500, XREADGROUP 100 at a time, XACK 100 ids a call), NATS JetStream (file storage;
publish 500 at a time with the server's acks awaited, a pull consumer fetching 100, one ack per
message) and the Redis broker (enqueue 500, reserve 100, settle 100; what `--suite scale` runs).
For each phase: the server process's CPU time (user + system, all threads, from /proc) per
message, and this client's. The bare transports keep no record, history, priority or delay: a
broker on them adds the side store ADR 0032 lists, so these are floors, not estimates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.cpu_meter import cpu_by_pid
from bench.private_nats import private_nats
from bench.private_redis import private_redis
from taskengine.brokers import open_broker
from taskengine.model import ResultStatus, TaskResult, new_task
from taskengine.model import outcome as outcomes

PAYLOAD = b'{"type":"bench.noop","payload":null,"queue":"default","priority":"normal"}'
Phase = tuple[str, Callable[[], Awaitable[None]]]
Costs = dict[str, tuple[float, float]]  # phase -> (server µs, client µs) per message


async def _phases(server_pid: int, count: int, phases: list[Phase]) -> Costs:
    """Run each phase and read the server's and this process's CPU around it."""
    costs = {}
    for name, phase in phases:
        server0, client0 = cpu_by_pid([server_pid])[server_pid], cpu_by_pid([os.getpid()])
        await phase()
        server1, client1 = cpu_by_pid([server_pid])[server_pid], cpu_by_pid([os.getpid()])
        costs[name] = (
            (server1 - server0) / count * 1e6,
            (client1[os.getpid()] - client0[os.getpid()]) / count * 1e6,
        )
    return costs


async def redis_streams(port: int, pid: int, count: int) -> Costs:
    """XADD, XREADGROUP, XACK: the consumer-group cycle with nothing beside it."""
    from redis.asyncio import Redis

    client = Redis(port=port)
    key, ids = f"s{uuid.uuid4().hex[:6]}", []
    await client.xgroup_create(key, "g", id="0", mkstream=True)

    async def add() -> None:
        for _ in range(0, count, 500):
            pipe = client.pipeline(transaction=False)
            for _ in range(500):
                pipe.xadd(key, {"t": PAYLOAD})
            await pipe.execute()

    async def read() -> None:
        while len(ids) < count:
            reply = await client.xreadgroup("g", "c", {key: ">"}, count=100)
            ids.extend(entry for _, entries in reply for entry, _ in entries)

    async def ack() -> None:
        for start in range(0, len(ids), 100):
            await client.xack(key, "g", *ids[start : start + 100])

    try:
        return await _phases(pid, count, [("enqueue", add), ("reserve", read), ("settle", ack)])
    finally:
        await client.delete(key)
        await client.aclose()


async def jetstream(port: int, pid: int, count: int) -> Costs:
    """Publish with acks, pull-fetch, ack each: the work-queue cycle with nothing beside it."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType

    client = await nats.connect(f"nats://127.0.0.1:{port}")
    js = client.jetstream(publish_async_max_pending=1000)
    await js.add_stream(name="FLOOR", subjects=["floor.>"], storage=StorageType.FILE)
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=600, max_ack_pending=-1)
    consumer = await js.pull_subscribe("floor.default", durable="w", config=config)
    fetched: list[Any] = []

    async def publish() -> None:
        for _ in range(0, count, 500):
            for _ in range(500):
                await js.publish_async("floor.default", PAYLOAD)
            await js.publish_async_completed()

    async def fetch() -> None:
        while len(fetched) < count:
            fetched.extend(await consumer.fetch(100, timeout=5))

    async def ack() -> None:
        for msg in fetched:
            await msg.ack()
        await client.flush()
        info = await js.consumer_info("FLOOR", "w")  # the acks were applied, not just sent
        while info.num_ack_pending:
            await asyncio.sleep(0.01)
            info = await js.consumer_info("FLOOR", "w")

    try:
        phases = [("enqueue", publish), ("reserve", fetch), ("settle", ack)]
        return await _phases(pid, count, phases)
    finally:
        await client.close()


async def redis_broker(port: int, pid: int, count: int) -> Costs:
    """Our Redis broker's enqueue, reserve and settle of no-op tasks."""
    broker = open_broker(f"redis://127.0.0.1:{port}/0?namespace=floor", max_depth=10**8)
    await broker.start()
    now = time.time()
    tasks = [new_task("bench.noop", None, now=now) for _ in range(count)]
    leases: list[Any] = []

    async def enqueue() -> None:
        for start in range(0, count, 500):
            await broker.enqueue(tasks[start : start + 500], time.time())

    async def reserve() -> None:
        while got := await broker.reserve("w1", 100, 600.0, time.time(), None):
            leases.extend(got)

    async def settle() -> None:
        for start in range(0, len(leases), 100):
            now = time.time()
            done = [
                outcomes.succeeded(
                    lease,
                    TaskResult(
                        task_id=lease.task_id,
                        status=ResultStatus.SUCCESS,
                        completed_at=now,
                        attempt=lease.record.attempt,
                    ),
                )
                for lease in leases[start : start + 100]
            ]
            await broker.settle(done, now)

    try:
        phases = [("enqueue", enqueue), ("reserve", reserve), ("settle", settle)]
        return await _phases(pid, count, phases)
    finally:
        await broker.drop_namespace()  # type: ignore[attr-defined]
        await broker.close()


def main() -> None:
    """Print the server's and the client's CPU µs per message for each transport and phase."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    count = parser.parse_args().messages
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    with private_redis() as redis_server, private_nats() as nats_server:
        assert redis_server.pid is not None and nats_server.pid is not None
        runs = [
            ("Redis Streams", redis_streams(redis_server.port, redis_server.pid, count)),
            ("JetStream", jetstream(nats_server.port, nats_server.pid, count)),
            ("Redis broker", redis_broker(redis_server.port, redis_server.pid, count)),
        ]
        for name, run in runs:
            costs = asyncio.run(run)
            server = sum(s for s, _ in costs.values())
            client = sum(c for _, c in costs.values())
            parts = ", ".join(f"{phase} {s:.1f}/{c:.1f}" for phase, (s, c) in costs.items())
            print(f"{name}: server {server:.1f} µs, client {client:.1f} µs per message ({parts})")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
