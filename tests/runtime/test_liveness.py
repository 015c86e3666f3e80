"""Which registered workers count as alive: those seen in the last three heartbeats."""

from __future__ import annotations

from taskengine.brokers import open_broker
from taskengine.model.worker import WorkerInfo
from taskengine.runtime.liveness import live_since, live_workers

NOW = 1_700_000_000.0


def _info(worker_id: str, last_seen: float) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        instance="i",
        host="h",
        pid=1,
        state="idle",
        started_at=NOW - 100,
        last_seen=last_seen,
    )


def test_live_since_is_three_heartbeats_back() -> None:
    assert live_since(NOW, 10.0) == NOW - 30.0
    assert live_since(NOW, 0.5) == NOW - 1.5


async def test_live_workers_are_those_seen_in_the_last_three_heartbeats() -> None:
    broker = open_broker("memory://")
    await broker.start()
    try:
        await broker.record_workers(
            [
                _info("i/w1", NOW),
                _info("i/w2", NOW - 30.0),  # exactly three heartbeats ago: still alive
                _info("i/w3", NOW - 30.5),  # missed a third heartbeat: gone
            ]
        )
        alive = await live_workers(broker, 10.0, NOW)
    finally:
        await broker.close()
    assert [info.id for info in alive] == ["i/w1", "i/w2"]
