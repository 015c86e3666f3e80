"""The metrics collector: counts and timings fed by the runtime, with no lock and no I/O.

Everything here is plain in-process counters updated on the event loop; the API reads a
snapshot. Per task the cost is a few dict increments and one append to a bounded deque.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from taskengine.model import Outcome, OutcomeKind, ResultStatus

WINDOW_SECONDS = 120  # throughput history kept, one bucket per second
SAMPLES_PER_TYPE = 2048  # recent durations kept per type for percentiles


class Throughput:
    """Completions per second over the last WINDOW_SECONDS, in one-second buckets."""

    def __init__(self) -> None:
        self._buckets: deque[list[float]] = deque(maxlen=WINDOW_SECONDS)  # [second, ok, failed]

    def add(self, now: float, ok: int, failed: int) -> None:
        """Count completions at `now`."""
        second = float(int(now))
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += ok
            buckets[-1][2] += failed
        else:
            buckets.append([second, ok, failed])

    def rate(self, now: float, seconds: int) -> float:
        """Completions per second over the last `seconds` full seconds before `now`."""
        start = int(now) - seconds
        total = sum(b[1] + b[2] for b in self._buckets if start <= b[0] < int(now))
        return total / seconds

    def series(self, now: float, seconds: int = 60) -> list[dict[str, float]]:
        """Per-second completions and failures for the last `seconds` (zeros included)."""
        by_second = {int(b[0]): b for b in self._buckets}
        end = int(now)
        points = []
        for second in range(end - seconds, end):
            bucket = by_second.get(second)
            points.append(
                {
                    "t": float(second),
                    "ok": bucket[1] if bucket else 0,
                    "failed": bucket[2] if bucket else 0,
                }
            )
        return points


class Metrics:
    """Task counters per type and outcome, durations per type, throughput over time."""

    def __init__(self) -> None:
        self.submitted: dict[str, int] = {}
        self.outcomes: dict[tuple[str, str], int] = {}
        self.durations: dict[str, deque[float]] = {}
        self.throughput = Throughput()
        self.started_at: float | None = None

    def on_submitted(self, task_type: str, count: int = 1) -> None:
        """Count tasks accepted by the broker."""
        self.submitted[task_type] = self.submitted.get(task_type, 0) + count

    def on_outcome(self, task_type: str, outcome: Outcome, now: float) -> None:
        """Count one settled run and keep its duration."""
        label = outcome_label(outcome)
        key = (task_type, label)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        result = outcome.result
        if result is not None and outcome.kind is not OutcomeKind.CANCELLED:
            samples = self.durations.get(task_type)
            if samples is None:
                samples = self.durations[task_type] = deque(maxlen=SAMPLES_PER_TYPE)
            samples.append(result.duration)
        if outcome.kind is OutcomeKind.SUCCEEDED:
            self.throughput.add(now, 1, 0)
        elif outcome.kind in (OutcomeKind.RETRY, OutcomeKind.DEAD):
            self.throughput.add(now, 0, 1)

    def latency(self) -> dict[str, dict[str, float]]:
        """p50/p95/p99 and mean of recent run durations per task type, in seconds."""
        table: dict[str, dict[str, float]] = {}
        for task_type, samples in self.durations.items():
            if samples:
                ordered = sorted(samples)
                table[task_type] = {
                    "count": float(len(ordered)),
                    "mean": sum(ordered) / len(ordered),
                    "p50": percentile(ordered, 0.50),
                    "p95": percentile(ordered, 0.95),
                    "p99": percentile(ordered, 0.99),
                }
        return table

    def totals(self) -> dict[str, int]:
        """Runs per outcome label across all types."""
        totals: dict[str, int] = {}
        for (_, label), count in self.outcomes.items():
            totals[label] = totals.get(label, 0) + count
        return totals

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything above as plain JSON-ready values."""
        totals = self.totals()
        finished = sum(totals.get(k, 0) for k in ("succeeded", "failed", "timed_out", "dead"))
        errors = sum(totals.get(k, 0) for k in ("failed", "timed_out", "dead"))
        return {
            "submitted": sum(self.submitted.values()),
            "outcomes": totals,
            "by_type": {
                task_type: {label: n for (t, label), n in self.outcomes.items() if t == task_type}
                for task_type in sorted({t for t, _ in self.outcomes})
            },
            "throughput": {
                "per_second_10s": self.throughput.rate(now, 10),
                "per_second_60s": self.throughput.rate(now, 60),
            },
            "error_rate": errors / finished if finished else 0.0,
            "latency_seconds": self.latency(),
        }


def outcome_label(outcome: Outcome) -> str:
    """The metrics label of an outcome: succeeded, failed, timed_out, dead, cancelled, …"""
    kind = outcome.kind
    if kind is OutcomeKind.RETRY:
        timed_out = outcome.result is not None and outcome.result.status is ResultStatus.TIMEOUT
        return "timed_out" if timed_out else "failed"
    return str(kind)


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted list."""
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
