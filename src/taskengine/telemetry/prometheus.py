"""Prometheus exposition: the collector's counters read at scrape time, never updated per task.

A custom prometheus_client collector turns the plain counters of `Metrics`, the sampler's
latest counts, the engine's status and the other instances' reports into metric families, so
the hot path takes no lock for Prometheus. Task, pool and process series carry an `instance`
label: counters are monotonic per instance, and a restarted process is a new instance whose
series start at zero (ADR 0033).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from taskengine.metrics.collector import BUCKETS, Metrics
from taskengine.policy.breaker import BreakerState
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.report import Histogram, InstanceTelemetry
from taskengine.telemetry.sampler import Sampler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    """Task, queue, worker, breaker and event-loop families of one engine process."""

    def __init__(
        self,
        metrics: Metrics,
        sampler: Sampler,
        status: Callable[[], EngineStatus | None],
        reports: Callable[[], Sequence[InstanceTelemetry]] = tuple,
        own: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.metrics = metrics
        self.sampler = sampler
        self.status = status  # the engine's status now; None: this process runs no pool
        self.reports = reports  # the other instances' latest reports
        self.own = own  # this process's instance; None: it runs no pool

    def collect(self) -> Iterator[Metric]:
        """Yield every family as of now (called by the registry on each scrape)."""
        reports = list(self.reports())
        own = self.own() or ""
        yield from self._tasks(own, reports)
        yield from self._queues()
        yield from self._workers(own, reports)
        loop_lag = GaugeMetricFamily(
            "taskengine_event_loop_lag_seconds",
            "How late each instance's last once-a-second sample woke.",
            labels=["instance"],
        )
        loop_lag.add_metric([own], self.sampler.loop_lag)
        rss = GaugeMetricFamily(
            "taskengine_instance_rss_bytes",
            "Resident memory of each other instance's process.",
            labels=["instance", "host"],
        )
        cpu = GaugeMetricFamily(
            "taskengine_instance_cpu_percent",
            "CPU use of each other instance's process over its last sampled second.",
            labels=["instance", "host"],
        )
        for report in reports:
            loop_lag.add_metric([report.instance], report.loop_lag_seconds)
            rss.add_metric([report.instance, report.host], report.rss_bytes)
            cpu.add_metric([report.instance, report.host], report.cpu_percent)
        yield from (loop_lag, rss, cpu)

    def _tasks(self, own: str, reports: list[InstanceTelemetry]) -> Iterator[Metric]:
        metrics = self.metrics
        submitted = CounterMetricFamily(
            "taskengine_tasks_submitted",
            "Tasks accepted by the broker.",
            labels=["type", "instance"],
        )
        started = CounterMetricFamily(
            "taskengine_tasks_started", "Runs handed to a worker.", labels=["type", "instance"]
        )
        finished = CounterMetricFamily(
            "taskengine_tasks",
            "Settled runs: how the attempt ended (succeeded, failed, timed_out, cancelled) and "
            "what followed (retried, dead, snoozed, released).",
            labels=["type", "outcome", "instance"],
        )
        durations = HistogramMetricFamily(
            "taskengine_task_duration_seconds",
            "Run time of one attempt.",
            labels=["type", "instance"],
        )
        waits = HistogramMetricFamily(
            "taskengine_task_wait_seconds",
            "Time from due (run_at) to start on a worker.",
            labels=["type", "instance"],
        )
        by_queue = CounterMetricFamily(
            "taskengine_queue_tasks",
            "Settled runs per queue by what became of the task (succeeded, retried, dead, "
            "snoozed, released, cancelled).",
            labels=["instance", "queue", "outcome"],
        )
        local = (
            own,
            metrics.submitted,
            metrics.started,
            [(t, label, n) for (t, label), n in sorted(metrics.outcomes.items())],
            {name: Histogram(list(t.counts), t.sum) for name, t in metrics.durations.items()},
            {name: Histogram(list(t.counts), t.sum) for name, t in metrics.waits.items()},
            [(q, label, n) for (q, label), n in sorted(metrics.by_queue.items())],
        )
        sources = [local] + [
            (r.instance, r.submitted, r.started, r.outcomes, r.durations, r.waits, r.queues)
            for r in reports
        ]
        for instance, subs, starts, outcomes, runs, waited, queues in sources:
            for queue, label, count in queues:
                by_queue.add_metric([instance, queue, label], count)
            for task_type, count in sorted(subs.items()):
                submitted.add_metric([task_type, instance], count)
            for task_type, count in sorted(starts.items()):
                started.add_metric([task_type, instance], count)
            for task_type, label, count in outcomes:
                finished.add_metric([task_type, label, instance], count)
            _add_histograms(durations, instance, runs)
            _add_histograms(waits, instance, waited)
        yield from (submitted, started, finished, durations, waits, by_queue)

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "taskengine_queue_depth",
            "Tasks held by the broker per queue, priority and state (sampled once a second).",
            labels=["queue", "priority", "state"],
        )
        for row in self.sampler.counts:
            depth.add_metric([row.queue, row.priority.name, str(row.state)], row.count)
        yield depth

    def _workers(self, own: str, reports: list[InstanceTelemetry]) -> Iterator[Metric]:
        status = self.status()
        size = GaugeMetricFamily(
            "taskengine_pool_size", "Workers in each instance's pool.", labels=["instance"]
        )
        busy = GaugeMetricFamily(
            "taskengine_pool_busy", "Workers running a task now.", labels=["instance"]
        )
        buffered = GaugeMetricFamily(
            "taskengine_pool_buffered",
            "Leases reserved and waiting for a worker.",
            labels=["instance"],
        )
        ratio = GaugeMetricFamily(
            "taskengine_worker_busy_ratio",
            "Busy fraction of each worker during its instance's last sampled second.",
            labels=["worker", "instance"],
        )
        breakers = GaugeMetricFamily(
            "taskengine_circuit_breaker_state",
            "1 for the state each task type's circuit breaker is in, per instance.",
            labels=["breaker", "state", "instance"],
        )
        if status is not None:
            size.add_metric([own], status.size)
            busy.add_metric([own], status.busy)
            buffered.add_metric([own], status.buffered)
            points = self.sampler.history.points
            mine = f"{own}/"
            if points:
                for worker_id, fraction in sorted(points[-1].busy.items()):
                    if worker_id.startswith(mine):
                        ratio.add_metric([worker_id, own], fraction)
            for name, snapshot in sorted(status.breakers.items()):
                for state in BreakerState:
                    value = 1.0 if snapshot.state is state else 0.0
                    breakers.add_metric([name, str(state), own], value)
            efficiency = GaugeMetricFamily(
                "taskengine_pool_efficiency",
                "Share of worker time busy while tasks waited, over the last minute "
                "(1 = none idle).",
            )
            efficiency.add_metric([], self.sampler.efficiency())
            yield efficiency
        for report in reports:
            size.add_metric([report.instance], report.size)
            busy.add_metric([report.instance], report.busy)
            buffered.add_metric([report.instance], report.buffered)
            if report.points:
                for worker_id, fraction in sorted(report.points[-1].busy.items()):
                    ratio.add_metric([worker_id, report.instance], fraction)
            for name, current in sorted(report.breakers.items()):
                for state in BreakerState:
                    value = 1.0 if current == str(state) else 0.0
                    breakers.add_metric([name, str(state), report.instance], value)
        yield from (size, busy, buffered, ratio, breakers)


def build_registry(collector: EngineCollector) -> CollectorRegistry:
    """A registry with the engine's families and the process, platform and GC collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition format of everything in `registry`."""
    return generate_latest(registry)


def _add_histograms(
    family: HistogramMetricFamily, instance: str, histograms: dict[str, Histogram]
) -> None:
    for task_type, histogram in sorted(histograms.items()):
        family.add_metric(
            [task_type, instance], _cumulative(histogram.counts), sum_value=histogram.sum
        )


def _cumulative(counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus buckets from counts per fixed bucket: (upper bound, observations at or below)."""
    bounds = (*map(str, BUCKETS), "+Inf")
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(bounds, counts, strict=False):
        total += count
        buckets.append((bound, total))
    return buckets
