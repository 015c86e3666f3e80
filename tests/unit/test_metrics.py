"""The metrics collector, the history ring and its file: pure, nothing running."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskengine.metrics import Metrics, Throughput, Timings, outcome_labels
from taskengine.model import Lease, Outcome, OutcomeKind, ResultStatus, TaskResult, new_task
from taskengine.model.task import queued_record
from taskengine.telemetry.history import History, Point

NOW = 1_700_000_000.0


def _outcome(kind: OutcomeKind, status: ResultStatus | None, duration: float = 0.5) -> Outcome:
    task = new_task("demo.echo", {}, now=NOW)
    lease = Lease(record=queued_record(task, NOW), token="t", expires_at=NOW + 30)
    result = None
    if status is not None:
        result = TaskResult(
            task_id=task.id, status=status, duration=duration, completed_at=NOW, attempt=1
        )
    run_at = NOW + 1 if kind in (OutcomeKind.RETRY, OutcomeKind.SNOOZE) else None
    return Outcome(kind=kind, task_id=task.id, token=lease.token, result=result, run_at=run_at)


@pytest.mark.parametrize(
    ("kind", "status", "labels"),
    [
        (OutcomeKind.SUCCEEDED, ResultStatus.SUCCESS, ("succeeded",)),
        (OutcomeKind.RETRY, ResultStatus.FAILURE, ("failed", "retried")),
        (OutcomeKind.RETRY, ResultStatus.TIMEOUT, ("timed_out", "retried")),
        (OutcomeKind.DEAD, ResultStatus.FAILURE, ("failed", "dead")),
        (OutcomeKind.DEAD, ResultStatus.TIMEOUT, ("timed_out", "dead")),
        (OutcomeKind.CANCELLED, ResultStatus.CANCELLED, ("cancelled",)),
        (OutcomeKind.SNOOZE, None, ("snoozed",)),
        (OutcomeKind.RELEASED, None, ("released",)),
    ],
)
def test_outcome_labels(
    kind: OutcomeKind, status: ResultStatus | None, labels: tuple[str, ...]
) -> None:
    assert outcome_labels(_outcome(kind, status)) == labels


def test_counters_rates_and_error_rate() -> None:
    metrics = Metrics()
    metrics.on_submitted("a", 3)
    metrics.on_started("a", waited=0.2)
    metrics.on_outcome("a", _outcome(OutcomeKind.SUCCEEDED, ResultStatus.SUCCESS), NOW)
    metrics.on_outcome("a", _outcome(OutcomeKind.SUCCEEDED, ResultStatus.SUCCESS), NOW + 1)
    metrics.on_outcome("b", _outcome(OutcomeKind.RETRY, ResultStatus.FAILURE), NOW + 1)
    metrics.on_outcome("b", _outcome(OutcomeKind.DEAD, ResultStatus.TIMEOUT), NOW + 2)
    metrics.on_outcome("b", _outcome(OutcomeKind.SNOOZE, None), NOW + 2)
    snap = metrics.snapshot(NOW + 3)
    assert snap["submitted"] == 3 and snap["started"] == 1
    assert snap["outcomes"] == {
        "succeeded": 2,
        "failed": 1,
        "retried": 1,
        "timed_out": 1,
        "dead": 1,
        "snoozed": 1,
    }
    assert snap["error_rate"] == pytest.approx(2 / 4)
    assert snap["by_type"]["b"]["dead"] == 1
    assert snap["throughput"]["per_second_10s"] == pytest.approx(4 / 10)
    assert snap["wait_seconds"]["a"]["p50"] == pytest.approx(0.2)
    assert metrics.throughput.at(int(NOW + 1)) == (1, 1)
    assert metrics.throughput.at(int(NOW + 9)) == (0, 0)


def test_cancelled_and_snoozed_runs_keep_no_duration() -> None:
    metrics = Metrics()
    metrics.on_outcome("a", _outcome(OutcomeKind.CANCELLED, ResultStatus.CANCELLED), NOW)
    metrics.on_outcome("a", _outcome(OutcomeKind.SNOOZE, None), NOW)
    assert metrics.snapshot(NOW)["latency_seconds"] == {}


def test_timings_histogram_is_cumulative_and_percentiles_follow_samples() -> None:
    timings = Timings()
    for value in [0.0005, 0.003, 0.003, 0.2, 400.0]:
        timings.observe(value)
    buckets = dict(timings.cumulative())
    assert buckets["0.001"] == 1
    assert buckets["0.005"] == 3
    assert buckets["0.25"] == 4
    assert buckets["300.0"] == 4
    assert buckets["+Inf"] == timings.count == 5
    assert timings.sum == pytest.approx(400.2065)
    summary = timings.summary()
    assert summary["p50"] == 0.003 and summary["p99"] == 400.0


def test_throughput_window_forgets_old_seconds() -> None:
    throughput = Throughput()
    for second in range(200):
        throughput.add(NOW + second, 1, 0)
    assert throughput.at(int(NOW)) == (0, 0)  # fell off the 120-second ring
    assert throughput.rate(NOW + 200, 60) == pytest.approx(1.0)


def test_history_ring_and_file_round_trip(tmp_path: Path) -> None:
    history = History(size=3)
    for second in range(5):
        history.add(Point(t=NOW + second, ok=second, busy={"w1": 0.5}))
    assert [p.t for p in history.points] == [NOW + 2, NOW + 3, NOW + 4]
    assert [p.t for p in history.since(NOW + 3)] == [NOW + 4]
    path = tmp_path / "sub" / "history.json"
    history.save(path)
    restored = History(size=3)
    assert restored.load(path, now=NOW + 5) == 3
    assert restored.points[-1].busy == {"w1": 0.5}
    stale = History(size=3)
    assert stale.load(path, now=NOW + 1000) == 0  # older than the window: a blank start
    (tmp_path / "bad.json").write_text("{not json")
    assert History().load(tmp_path / "bad.json", now=NOW) == 0
    assert History().load(tmp_path / "absent.json", now=NOW) == 0
