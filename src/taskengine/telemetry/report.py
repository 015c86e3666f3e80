"""What one engine process publishes of itself with each heartbeat (ADR 0033).

The report is MessagePack, opaque to the broker (`BrokerAdmin.record_instance`): the counters
since the process started (so a reader sums them, and a restart starts a new instance at zero),
the run-time and queue-wait histograms as bucket counts, the pool, the breakers, the process
figures, the last seconds at one-second resolution (each worker's busy fraction), the settled
runs per queue and fate, and each queue's rate over the last minute. Reports
overlap by a few seconds, so a reader that misses one heartbeat loses no second.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from taskengine.metrics.collector import Metrics, Timings
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.history import Point

REPORT_VERSION = 1


class Histogram(msgspec.Struct, array_like=True, frozen=True):
    """One histogram of the collector: observations per fixed bucket (the last is +Inf)."""

    counts: list[int]
    sum: float


class InstanceTelemetry(msgspec.Struct, kw_only=True, frozen=True):
    """One engine process's telemetry as of `at`."""

    v: int = REPORT_VERSION
    instance: str
    host: str
    pid: int
    version: str
    started_at: float
    at: float
    submitted: dict[str, int] = msgspec.field(default_factory=dict)  # by task type
    started: dict[str, int] = msgspec.field(default_factory=dict)  # by task type
    outcomes: list[tuple[str, str, int]] = msgspec.field(default_factory=list)  # type, label, n
    durations: dict[str, Histogram] = msgspec.field(default_factory=dict)
    waits: dict[str, Histogram] = msgspec.field(default_factory=dict)
    size: int = 0
    busy: int = 0
    buffered: int = 0
    overrunning_threads: int = 0
    breakers: dict[str, str] = msgspec.field(default_factory=dict)  # name -> state
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    loop_lag_seconds: float = 0.0
    rate_10s: float = 0.0  # finished attempts per second over the last 10 s
    rate_60s: float = 0.0  # and over the last minute
    points: list[Point] = msgspec.field(default_factory=list)  # the last seconds, oldest first
    queues: list[tuple[str, str, int]] = msgspec.field(default_factory=list)  # queue, fate, n
    queue_rates: dict[str, float] = msgspec.field(default_factory=dict)  # runs/s, last minute


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(InstanceTelemetry)


def build_report(
    metrics: Metrics,
    status: EngineStatus,
    points: Iterable[Point],
    *,
    host: str,
    pid: int,
    version: str,
    started_at: float,
    queue_rates: dict[str, float] | None = None,
) -> InstanceTelemetry:
    """This process's report as of `status.at`, with `points` (the last seconds sampled) and
    `queue_rates` (runs per second per queue over the last minute, telemetry/rates.py)."""
    recent = list(points)
    last = recent[-1] if recent else Point(t=status.at)
    return InstanceTelemetry(
        instance=status.instance,
        host=host,
        pid=pid,
        version=version,
        started_at=started_at,
        at=status.at,
        submitted=dict(metrics.submitted),
        started=dict(metrics.started),
        outcomes=[(t, label, n) for (t, label), n in sorted(metrics.outcomes.items())],
        durations=_histograms(metrics.durations),
        waits=_histograms(metrics.waits),
        size=status.size,
        busy=status.busy,
        buffered=status.buffered,
        overrunning_threads=status.overrunning_threads,
        breakers={name: str(snap.state) for name, snap in sorted(status.breakers.items())},
        rss_bytes=last.rss_bytes,
        cpu_percent=last.cpu_percent,
        loop_lag_seconds=last.loop_lag_seconds,
        rate_10s=metrics.throughput.rate(status.at, 10),
        rate_60s=metrics.throughput.rate(status.at, 60),
        points=[msgspec.structs.replace(p, depth={}, running=0) for p in recent],
        queues=[(q, label, n) for (q, label), n in sorted(metrics.by_queue.items())],
        queue_rates=dict(queue_rates or {}),
    )


def encode_report(report: InstanceTelemetry) -> bytes:
    """The report as the broker stores it."""
    return _encoder.encode(report)


def decode_report(data: bytes) -> InstanceTelemetry | None:
    """The report in `data`, or None if it is not one this build reads (a newer format)."""
    try:
        report = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return report if report.v == REPORT_VERSION else None


def _histograms(timings: dict[str, Timings]) -> dict[str, Histogram]:
    return {name: Histogram(list(t.counts), t.sum) for name, t in sorted(timings.items())}
