"""The JSON metrics (`/api/metrics`, each live tick): counters, rates, timings, depth, pool,
breakers and process figures, from the collector, one `counts()` and the engine status."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from taskengine.brokers.base import CountRow
from taskengine.metrics.collector import Metrics
from taskengine.process_stats import process_stats
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.aggregate import cluster_counters, instance_view
from taskengine.telemetry.figures import broker_figures
from taskengine.telemetry.report import InstanceTelemetry, build_report
from taskengine.telemetry.sampler import Sampler


def metrics_snapshot(
    metrics: Metrics,
    rows: Sequence[CountRow],
    status: EngineStatus | None,
    sampler: Sampler,
    *,
    now: float,
    started_at: float,
    reports: Sequence[InstanceTelemetry] = (),
    version: str = "",
) -> dict[str, Any]:
    """The JSON metrics as of `now`; `status` is None in a process that runs no pool.

    The counters and throughput are the cluster's: this process's plus the other instances'
    `reports`; `instances` breaks them down, this process first; `pool` is this process's,
    `cluster_pool` every instance's.
    """
    body = metrics.snapshot(now)
    body.update(cluster_counters(metrics, reports, now))
    instances = [instance_view(r) for r in reports]
    if status is not None:
        local = build_report(
            metrics,
            status,
            sampler.history.since(now - 2),
            host=socket.gethostname(),
            pid=os.getpid(),
            version=version,
            started_at=started_at,
            queue_rates=sampler.rates(now),
        )
        instances.insert(0, instance_view(local, local=True))
    body["instances"] = instances
    body["cluster_pool"] = {
        "instances": len(instances),
        "size": sum(i["size"] for i in instances),
        "busy": sum(i["busy"] for i in instances),
    }
    # Leased but still in this instance's buffer is not running yet.
    body.update(broker_figures(rows, status.buffered if status is not None else 0))
    body["breakers"] = []
    if status is not None:
        body["pool"] = {
            "instance": status.instance,
            "size": status.size,
            "busy": status.busy,
            "utilisation": status.busy / status.size if status.size else 0.0,
            "efficiency": round(sampler.efficiency(), 4),
            "buffered": status.buffered,
            "overrunning_threads": status.overrunning_threads,
        }
        body["breakers"] = [
            {"name": name, "state": str(snap.state), "retry_after": snap.retry_after}
            for name, snap in sorted(status.breakers.items())
        ]
    # the sampler's reading: CPU % over its last second, not since a call milliseconds ago
    stats = sampler.process or process_stats()
    body["process"] = {**stats, "loop_lag_seconds": sampler.loop_lag}
    body["uptime_seconds"] = now - started_at if started_at else 0.0
    return body
