"""The report one engine process hands its heartbeat to publish (telemetry/report.py).

The process samples itself once a second (`Sampler`); each heartbeat encodes the counters, the
pool as of now and the seconds sampled since a little before the previous heartbeat. In `serve`
the live feed drives the sampler; in `worker` the engine does (`sample`), without the broker
counts a worker does not show.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from taskengine.metrics.collector import Metrics
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.report import build_report, encode_report
from taskengine.telemetry.sampler import Sampler

OVERLAP = 3.0  # seconds each report repeats of the one before: a late heartbeat loses none


class Publisher:
    """Builds this process's telemetry report for the heartbeat."""

    def __init__(
        self,
        metrics: Metrics,
        sampler: Sampler,
        status: Callable[[float], EngineStatus],
        *,
        every: float,
        version: str,
        started_at: float,
    ) -> None:
        self.metrics = metrics
        self.sampler = sampler
        self.status = status
        self.every = every  # the heartbeat's interval
        self.version = version
        self.started_at = started_at
        self.host = socket.gethostname()
        self.pid = os.getpid()

    async def sample(self) -> None:
        """Sample this second, unless the live feed samples this process already."""
        if not self.sampler.driven_by_feed:
            await self.sampler.run_once()

    def report(self, now: float) -> bytes:
        """The encoded report as of `now`: the seconds of the last interval and a few more."""
        since = now - self.every - OVERLAP
        report = build_report(
            self.metrics,
            self.status(now),
            self.sampler.history.since(since),
            host=self.host,
            pid=self.pid,
            version=self.version,
            started_at=self.started_at,
            queue_rates=self.sampler.rates(now),
        )
        return encode_report(report)
