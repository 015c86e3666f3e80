"""The workers of every instance: the registry's live entries, this process's own as they are now.

The registry holds what each instance's last heartbeat reported, up to `heartbeat_every` old;
the process serving the request knows its own workers to the instant, from the engine status.
"""

from __future__ import annotations

from taskengine.brokers.base import BrokerAdmin
from taskengine.model.worker import WorkerInfo
from taskengine.runtime.liveness import live_workers
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.report import InstanceTelemetry, decode_report


async def cluster_workers(
    broker: BrokerAdmin, heartbeat_every: float, now: float, local: EngineStatus | None = None
) -> list[WorkerInfo]:
    """The workers of every instance seen in the last three heartbeats, by id; with `local`,
    this process's workers as that status shows them (one broker call)."""
    infos = await live_workers(broker, heartbeat_every, now)
    return infos if local is None else with_local(infos, local)


def with_local(infos: list[WorkerInfo], local: EngineStatus) -> list[WorkerInfo]:
    """`infos` with this process's active workers replaced (or added) as `local` shows them,
    by id; a retired worker left the registry, so it is not added back."""
    mine = {worker.info.id: worker.info for worker in local.workers if worker.active}
    merged = [mine.pop(info.id, info) for info in infos]
    return sorted([*merged, *mine.values()], key=lambda info: info.id)


async def cluster_reports(broker: BrokerAdmin, now: float) -> list[InstanceTelemetry]:
    """The telemetry report of every engine process whose report has not expired, by instance
    (one broker call); one this build cannot read (a newer format) is left out."""
    reports = [decode_report(r.data) for r in await broker.instances(now)]
    return [r for r in reports if r is not None]
