"""The cluster as `serve` shows it: counters summed, seconds merged, series per instance."""

from __future__ import annotations

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from taskengine.clock import FakeClock
from taskengine.metrics import Metrics
from taskengine.model import Outcome, OutcomeKind, ResultStatus, TaskResult
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.aggregate import SecondsMerger, cluster_counters, others, queue_rates
from taskengine.telemetry.history import History, Point
from taskengine.telemetry.prometheus import EngineCollector, build_registry, exposition
from taskengine.telemetry.report import Histogram, InstanceTelemetry
from taskengine.telemetry.sampler import Sampler

NOW = 1_700_000_000.0


def _report(instance: str, succeeded: int, points: list[Point] | None = None) -> InstanceTelemetry:
    return InstanceTelemetry(
        instance=instance,
        host="h2",
        pid=7,
        version="0.1.0",
        started_at=NOW - 60,
        at=NOW,
        submitted={"a": 1},
        started={"a": succeeded},
        outcomes=[("a", "succeeded", succeeded), ("b", "failed", 1), ("b", "retried", 1)],
        durations={"a": Histogram([succeeded] + [0] * 15, 0.5)},
        size=4,
        busy=1,
        points=points or [],
    )


def _succeeded(metrics: Metrics, count: int) -> None:
    for _ in range(count):
        result = TaskResult(
            task_id="t", status=ResultStatus.SUCCESS, duration=0.01, completed_at=NOW
        )
        metrics.on_outcome(
            "a", Outcome(kind=OutcomeKind.SUCCEEDED, task_id="t", token="x", result=result), NOW
        )


def test_counters_add_up_across_this_process_and_the_other_instances() -> None:
    metrics = Metrics()
    _succeeded(metrics, 3)
    metrics.on_submitted("a", 10)
    body = cluster_counters(metrics, [_report("x", 5), _report("y", 7)], NOW)
    assert body["outcomes"] == {"succeeded": 15, "failed": 2, "retried": 2}
    assert body["by_type"]["a"] == {"succeeded": 15}
    assert body["submitted"] == 12
    assert body["error_rate"] == 2 / 17


def test_this_process_own_report_is_left_to_its_live_figures() -> None:
    reports = [_report("me", 1), _report("other", 2)]
    assert [r.instance for r in others(reports, "me")] == ["other"]
    assert [r.instance for r in others(reports, None)] == ["me", "other"]


def test_other_instances_seconds_are_merged_into_the_local_points_once() -> None:
    history = History()
    for t in (NOW - 2, NOW - 1):
        history.add(Point(t=t, ok=1, busy={"me/w1": 0.5}))
    late = Point(t=NOW, ok=9, busy={"x/w1": 1.0})  # not sampled here yet: waits
    report = _report("x", 0, [Point(t=NOW - 1, ok=2, busy={"x/w1": 0.25}), late])
    merger = SecondsMerger()

    changed = merger.merge(history, [report])
    assert [p.t for p in changed] == [NOW - 1]
    assert changed[0].ok == 3 and changed[0].busy == {"me/w1": 0.5, "x/w1": 0.25}
    assert merger.merge(history, [report]) == []  # the next read of the same report

    history.add(Point(t=NOW, ok=1, busy={"me/w1": 0.0}))
    [now_point] = merger.merge(history, [report])
    assert now_point.t == NOW and now_point.ok == 10 and now_point.busy["x/w1"] == 1.0


def test_prometheus_has_series_per_instance_for_counters_histograms_and_pools() -> None:
    metrics = Metrics()
    _succeeded(metrics, 3)
    sampler = Sampler(metrics, None, FakeClock(NOW), with_counts=False)  # type: ignore[arg-type]
    status = EngineStatus(instance="me", at=NOW, size=2, busy=0, buffered=0, overrunning_threads=0)
    reports = [_report("x", 5, [Point(t=NOW - 1, busy={"x/w1": 0.75})])]
    collector = EngineCollector(metrics, sampler, lambda: status, lambda: reports, lambda: "me")
    text = exposition(build_registry(collector)).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("taskengine_tasks_total", type="a", outcome="succeeded", instance="me") == 3
    assert value("taskengine_tasks_total", type="a", outcome="succeeded", instance="x") == 5
    assert value("taskengine_task_duration_seconds_count", type="a", instance="x") == 5
    assert value("taskengine_pool_size", instance="x") == 4
    assert value("taskengine_pool_size", instance="me") == 2
    assert value("taskengine_worker_busy_ratio", worker="x/w1", instance="x") == 0.75


def test_queue_rates_and_counts_add_up_across_instances() -> None:
    metrics = Metrics()
    for _ in range(2):
        result = TaskResult(
            task_id="t", status=ResultStatus.SUCCESS, duration=0.0, completed_at=NOW
        )
        outcome = Outcome(kind=OutcomeKind.SUCCEEDED, task_id="t", token="x", result=result)
        metrics.on_outcome("a", outcome, NOW, "mail")
    x = msgspec.structs.replace(
        _report("x", 1),
        queues=[("mail", "succeeded", 30), ("mail", "dead", 2)],
        queue_rates={"mail": 0.5},
    )
    y = msgspec.structs.replace(
        _report("y", 1), queues=[("bulk", "succeeded", 60)], queue_rates={"mail": 0.25, "bulk": 1.0}
    )
    assert queue_rates({"mail": 2 / 60}, [x, y]) == {"bulk": 1.0, "mail": 0.75 + 2 / 60}

    sampler = Sampler(metrics, None, FakeClock(NOW), with_counts=False)  # type: ignore[arg-type]
    collector = EngineCollector(metrics, sampler, lambda: None, lambda: [x, y], lambda: "me")
    families = text_string_to_metric_families(exposition(build_registry(collector)).decode())
    series = {
        (s.labels["instance"], s.labels["queue"], s.labels["outcome"]): s.value
        for family in families
        for s in family.samples
        if s.name == "taskengine_queue_tasks_total"
    }
    assert series == {
        ("me", "mail", "succeeded"): 2,
        ("x", "mail", "succeeded"): 30,
        ("x", "mail", "dead"): 2,
        ("y", "bulk", "succeeded"): 60,
    }
