"""NATS only: a nats-server with JetStream file storage, SIGKILLed and restarted, has lost no
acknowledged task and no acknowledged state change (claims, results, pauses, registry).

The test starts its own server in its temporary directory, writes through one broker, kills
the server by PID mid-stream (writes in flight fail, the acknowledged ones must survive),
restarts it on the same store and reads everything back through a fresh broker (a replica
rebuilt from the log) and through the first one, which reconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskengine.brokers import BrokerBackend, open_broker
from taskengine.errors import BrokerUnavailable
from taskengine.model import OutcomeKind, TaskState, new_task
from tests.brokers.support import outcome
from tests.chaos.support import pick, until
from tests.nats_server import NatsServer

pytestmark = pytest.mark.slow

ROUNDS = pick(2, 5)
BATCHES = pick(20, 100)  # acknowledged batches before each kill


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    made = NatsServer(tmp_path / "nats")
    made.start()
    try:
        yield made
    finally:
        made.close()


async def test_a_killed_server_loses_no_acknowledged_task(server: NatsServer) -> None:
    url = server.url("restart") + "&timeout=2"
    writer = open_broker(url)
    await writer.start()
    acknowledged: dict[str, TaskState] = {}
    try:
        for round_ in range(ROUNDS):
            for n in range(BATCHES):
                now = time.time()
                tasks = [
                    new_task("demo.echo", {"r": round_, "n": n, "i": i}, now=now) for i in range(10)
                ]
                await writer.enqueue(tasks, now)
                acknowledged.update({t.id: TaskState.QUEUED for t in tasks})
                leases = await writer.reserve("w", 3, 300.0, now)
                applied = await writer.settle(
                    [outcome(OutcomeKind.SUCCEEDED, lease, now) for lease in leases[:2]], now
                )
                assert applied == [True] * len(leases[:2])
                acknowledged.update({lease.task_id: TaskState.SUCCEEDED for lease in leases[:2]})
                acknowledged.update({lease.task_id: TaskState.RUNNING for lease in leases[2:]})
            await writer.pause([f"q{round_}"])
            # a write racing the kill: it fails or it is acknowledged (and then kept)
            racing = asyncio.ensure_future(
                writer.enqueue([new_task("demo.echo", {}, now=now)], now)
            )
            server.crash()
            try:
                [result] = await racing
                acknowledged[result.id] = TaskState.QUEUED
            except BrokerUnavailable:
                pass
            server.start()

            reader = open_broker(url)

            async def started(reader: BrokerBackend = reader) -> bool:
                try:
                    await reader.start()
                except BrokerUnavailable:
                    return False
                return True

            await until(started, 30, "a fresh broker to start on the restarted server")
            try:
                records = await reader.get(list(acknowledged))
                lost = [i for i, r in zip(acknowledged, records, strict=True) if r is None]
                assert not lost, f"round {round_}: {len(lost)} acknowledged tasks lost"
                states = {r.id: r.state for r in records if r is not None}
                assert states == acknowledged
                assert await reader.paused() == {f"q{r}" for r in range(round_ + 1)}
            finally:
                await reader.close()

            async def writer_back() -> bool:
                try:
                    await writer.get([])
                except BrokerUnavailable:
                    return False
                return True

            await until(writer_back, 30, "the first broker to reconnect")
    finally:
        await writer.close()
