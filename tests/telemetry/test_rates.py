"""Each queue's rate: runs that ended per second over the last minute, from counter deltas."""

from __future__ import annotations

from taskengine.metrics import Metrics
from taskengine.model import Outcome, OutcomeKind, ResultStatus, TaskResult
from taskengine.telemetry.rates import QueueRates

NOW = 1_700_000_000.0


def _settle(metrics: Metrics, queue: str, kind: OutcomeKind, count: int = 1) -> None:
    status = ResultStatus.SUCCESS if kind is OutcomeKind.SUCCEEDED else ResultStatus.FAILURE
    for _ in range(count):
        result = TaskResult(task_id="t", status=status, duration=0.01, completed_at=NOW)
        run_at = NOW + 1 if kind in (OutcomeKind.RETRY, OutcomeKind.SNOOZE) else None
        outcome = Outcome(kind=kind, task_id="t", token="x", result=result, run_at=run_at)
        metrics.on_outcome("a", outcome, NOW, queue)


def test_settled_runs_count_per_queue_by_fate() -> None:
    metrics = Metrics()
    _settle(metrics, "mail", OutcomeKind.SUCCEEDED, 3)
    _settle(metrics, "mail", OutcomeKind.RETRY)
    _settle(metrics, "mail", OutcomeKind.DEAD)
    _settle(metrics, "reports", OutcomeKind.SNOOZE)
    assert metrics.by_queue == {
        ("mail", "succeeded"): 3,
        ("mail", "retried"): 1,
        ("mail", "dead"): 1,
        ("reports", "snoozed"): 1,
    }
    assert metrics.queue_finished() == {"mail": 5}  # a snoozed run is not one that ended


def test_the_rate_counts_the_last_minute_only() -> None:
    rates = QueueRates()
    seen: dict[int, dict[str, float]] = {}
    for second in range(0, 121):  # a sample a second; 2 runs a second on "mail" until 60
        totals = {"mail": 2 * min(second, 60), "idle": 5}
        rates.observe(NOW + second, totals)
        seen[second] = rates.rates(NOW + second, totals)
    assert seen[30] == {"mail": 1.0, "idle": 5 / 60}  # younger than a minute: from zero
    assert seen[60] == {"mail": 2.0, "idle": 0.0}  # the sample at 0 is the baseline
    assert seen[90] == {"mail": 1.0, "idle": 0.0}  # half the last minute had runs
    assert seen[120] == {"mail": 0.0, "idle": 0.0}
