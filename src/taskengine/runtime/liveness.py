"""Which workers of the registry are alive: those seen in the last three heartbeats.

Each instance records its workers once per `heartbeat_every`; an entry older than three
intervals belongs to an instance that stopped or lost the broker. The heartbeat (which
instances run a task type), the API and the live feed all ask this one question here.
"""

from __future__ import annotations

from taskengine.brokers.base import BrokerAdmin
from taskengine.model.worker import WorkerInfo

LIVE_HEARTBEATS = 3  # heartbeats an instance may miss before its workers count as gone


def live_since(now: float, heartbeat_every: float) -> float:
    """The oldest last heartbeat of a worker still counted alive at `now`."""
    return now - LIVE_HEARTBEATS * heartbeat_every


async def live_workers(broker: BrokerAdmin, heartbeat_every: float, now: float) -> list[WorkerInfo]:
    """The registry's workers of every instance seen in the last three heartbeats, by id
    (one broker call)."""
    return await broker.workers(live_since(now, heartbeat_every))
