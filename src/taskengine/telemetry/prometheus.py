"""Prometheus exposition: the collector's counters read at scrape time, never updated per task.

A custom prometheus_client collector turns the plain counters of `Metrics`, the sampler's
latest counts and the engine's status into metric families, so the hot path takes no lock for
Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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

from taskengine.metrics.collector import Metrics, Timings
from taskengine.policy.breaker import BreakerState
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.sampler import Sampler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    """Task, queue, worker, breaker and event-loop families of one engine process."""

    def __init__(
        self, metrics: Metrics, sampler: Sampler, status: Callable[[], EngineStatus | None]
    ) -> None:
        self.metrics = metrics
        self.sampler = sampler
        self.status = status  # the engine's status now; None: this process runs no pool

    def collect(self) -> Iterator[Metric]:
        """Yield every family as of now (called by the registry on each scrape)."""
        yield from self._tasks()
        yield from self._queues()
        yield from self._workers()
        loop_lag = GaugeMetricFamily(
            "taskengine_event_loop_lag_seconds", "How late the last once-a-second sample woke."
        )
        loop_lag.add_metric([], self.sampler.loop_lag)
        yield loop_lag

    def _tasks(self) -> Iterator[Metric]:
        metrics = self.metrics
        submitted = CounterMetricFamily(
            "taskengine_tasks_submitted", "Tasks accepted by the broker.", labels=["type"]
        )
        for task_type, count in sorted(metrics.submitted.items()):
            submitted.add_metric([task_type], count)
        started = CounterMetricFamily(
            "taskengine_tasks_started", "Runs handed to a worker.", labels=["type"]
        )
        for task_type, count in sorted(metrics.started.items()):
            started.add_metric([task_type], count)
        finished = CounterMetricFamily(
            "taskengine_tasks",
            "Settled runs: how the attempt ended (succeeded, failed, timed_out, cancelled) and "
            "what followed (retried, dead, snoozed, released).",
            labels=["type", "outcome"],
        )
        for (task_type, label), count in sorted(metrics.outcomes.items()):
            finished.add_metric([task_type, label], count)
        yield from (submitted, started, finished)
        yield _histogram(
            "taskengine_task_duration_seconds", "Run time of one attempt.", metrics.durations
        )
        yield _histogram(
            "taskengine_task_wait_seconds",
            "Time from due (run_at) to start on a worker.",
            metrics.waits,
        )

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "taskengine_queue_depth",
            "Tasks held by the broker per queue, priority and state (sampled once a second).",
            labels=["queue", "priority", "state"],
        )
        for row in self.sampler.counts:
            depth.add_metric([row.queue, row.priority.name, str(row.state)], row.count)
        yield depth

    def _workers(self) -> Iterator[Metric]:
        status = self.status()
        if status is None:
            return
        size = GaugeMetricFamily("taskengine_pool_size", "Workers in this process's pool.")
        size.add_metric([], status.size)
        busy = GaugeMetricFamily("taskengine_pool_busy", "Workers running a task now.")
        busy.add_metric([], status.busy)
        buffered = GaugeMetricFamily(
            "taskengine_pool_buffered", "Leases reserved and waiting for a worker."
        )
        buffered.add_metric([], status.buffered)
        efficiency = GaugeMetricFamily(
            "taskengine_pool_efficiency",
            "Share of worker time busy while tasks waited, over the last minute (1 = none idle).",
        )
        efficiency.add_metric([], self.sampler.efficiency())
        ratio = GaugeMetricFamily(
            "taskengine_worker_busy_ratio",
            "Busy fraction of each worker during the last sampled second.",
            labels=["worker"],
        )
        points = self.sampler.history.points
        if points:
            for worker_id, fraction in sorted(points[-1].busy.items()):
                ratio.add_metric([worker_id], fraction)
        breakers = GaugeMetricFamily(
            "taskengine_circuit_breaker_state",
            "1 for the state each task type's circuit breaker is in.",
            labels=["breaker", "state"],
        )
        for name, snapshot in sorted(status.breakers.items()):
            for state in BreakerState:
                breakers.add_metric([name, str(state)], 1.0 if snapshot.state is state else 0.0)
        yield from (size, busy, buffered, efficiency, ratio, breakers)


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


def _histogram(name: str, documentation: str, timings: dict[str, Timings]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["type"])
    for task_type, series in sorted(timings.items()):
        family.add_metric([task_type], series.cumulative(), sum_value=series.sum)
    return family
