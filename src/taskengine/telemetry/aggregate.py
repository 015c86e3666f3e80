"""The cluster as `serve` shows it: this process's figures plus every other instance's report.

Counters add up across instances (each report holds its process's counts since it started);
this process's own report is replaced by its live figures. The seconds other instances sampled
are merged into this process's history as they arrive (up to a heartbeat late), so the chart
and the heatmap cover every worker of every instance at one-second resolution.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskengine.metrics.collector import ERROR_LABELS, Metrics
from taskengine.telemetry.history import BUSY_KEPT, History, Point
from taskengine.telemetry.report import InstanceTelemetry


def others(reports: Iterable[InstanceTelemetry], own: str | None) -> list[InstanceTelemetry]:
    """The reports of every instance but this process's own (`own`: its engine's instance)."""
    return [r for r in reports if r.instance != own]


def cluster_counters(
    metrics: Metrics, reports: Sequence[InstanceTelemetry], now: float
) -> dict[str, Any]:
    """submitted, started, outcomes (per label), by_type, throughput and error_rate across this
    process (`metrics`, as of `now`) and the other instances' `reports`."""
    submitted = sum(metrics.submitted.values())
    started = sum(metrics.started.values())
    by_type: dict[str, dict[str, int]] = {}
    for (task_type, label), count in metrics.outcomes.items():
        _add(by_type.setdefault(task_type, {}), label, count)
    for report in reports:
        submitted += sum(report.submitted.values())
        started += sum(report.started.values())
        for task_type, label, count in report.outcomes:
            _add(by_type.setdefault(task_type, {}), label, count)
    totals: dict[str, int] = {}
    for labels in by_type.values():
        for label, count in labels.items():
            _add(totals, label, count)
    errors = sum(totals.get(label, 0) for label in ERROR_LABELS)
    finished = errors + totals.get("succeeded", 0)
    now_rates = (metrics.throughput.rate(now, 10), metrics.throughput.rate(now, 60))
    return {
        "throughput": {
            "per_second_10s": now_rates[0] + sum(r.rate_10s for r in reports),
            "per_second_60s": now_rates[1] + sum(r.rate_60s for r in reports),
        },
        "submitted": submitted,
        "started": started,
        "outcomes": totals,
        "by_type": {name: by_type[name] for name in sorted(by_type)},
        "error_rate": errors / finished if finished else 0.0,
    }


def queue_rates(
    local: Mapping[str, float], reports: Iterable[InstanceTelemetry]
) -> dict[str, float]:
    """Runs per second per queue over the last minute across this process (`local`, from its
    sampler) and the other instances' `reports`: each instance's rate, summed."""
    rates = dict(local)
    for report in reports:
        for queue, rate in report.queue_rates.items():
            rates[queue] = rates.get(queue, 0.0) + rate
    return {queue: rates[queue] for queue in sorted(rates)}


def reported_figures(reports: Sequence[InstanceTelemetry], now: float) -> dict[str, Any]:
    """The cluster's counters and per-instance breakdown from the reports alone (what the CLI
    shows without a server)."""
    body = cluster_counters(Metrics(), reports, now)
    body["instances"] = [instance_view(r) for r in reports]
    return body


def instance_view(report: InstanceTelemetry, *, local: bool = False) -> dict[str, Any]:
    """One instance of the per-instance breakdown (JSON-ready)."""
    totals: dict[str, int] = {}
    for _, label, count in report.outcomes:
        _add(totals, label, count)
    return {
        "instance": report.instance,
        "host": report.host,
        "pid": report.pid,
        "version": report.version,
        "local": local,
        "started_at": report.started_at,
        "reported_at": report.at,
        "size": report.size,
        "busy": report.busy,
        "buffered": report.buffered,
        "overrunning_threads": report.overrunning_threads,
        "submitted": sum(report.submitted.values()),
        "outcomes": totals,
        "breakers": report.breakers,
        "rss_bytes": report.rss_bytes,
        "cpu_percent": report.cpu_percent,
        "loop_lag_seconds": report.loop_lag_seconds,
    }


class SecondsMerger:
    """Adds the seconds other instances reported to this process's history points, once each."""

    def __init__(self) -> None:
        self._merged: dict[float, set[str]] = {}  # second -> instances already added

    def merge(self, history: History, reports: Sequence[InstanceTelemetry]) -> list[Point]:
        """Add each report's not yet merged seconds (ok, failed, busy per worker) to the local
        point of the same second; return the points that changed. A second newer than the
        newest local point waits for the next call (the report is read again)."""
        recent = itertools.islice(reversed(history.points), BUSY_KEPT)
        points = {p.t: p for p in recent}  # reports are at most a heartbeat late
        if not points:
            return []
        changed: dict[float, Point] = {}
        for report in reports:
            for second in report.points:
                point = points.get(second.t)
                merged = self._merged.setdefault(second.t, set())
                if point is None or report.instance in merged:
                    continue
                merged.add(report.instance)
                point.ok += second.ok
                point.failed += second.failed
                point.busy.update(second.busy)
                changed[point.t] = point
        newest = max(points)  # a second not sampled here yet stays pending
        for t in [t for t in self._merged if t not in points and t < newest]:
            del self._merged[t]
        return [changed[t] for t in sorted(changed)]


def _add(counts: dict[str, int], label: str, count: int) -> None:
    counts[label] = counts.get(label, 0) + count
