"""The metrics collector: counts and timings fed by the runtime, with no lock and no I/O.

Everything here is plain in-process counters updated on the event loop; the API, the Prometheus
exposition and the live feed read them. Per task the cost is a few dict increments, one bisect
into fixed histogram buckets and one append to a bounded deque.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from typing import Any

from taskengine.model import Outcome, OutcomeKind, ResultStatus
from taskengine.model.task import DEFAULT_QUEUE

WINDOW_SECONDS = 120  # throughput history kept, one bucket per second
SAMPLES_PER_TYPE = 2048  # recent timings kept per type for percentiles
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ERROR_LABELS = ("failed", "timed_out")
_STATUS_LABELS = {
    ResultStatus.SUCCESS: "succeeded",
    ResultStatus.FAILURE: "failed",
    ResultStatus.TIMEOUT: "timed_out",
    ResultStatus.CANCELLED: "cancelled",
}
_FATE_LABELS = {
    OutcomeKind.RETRY: "retried",
    OutcomeKind.DEAD: "dead",
    OutcomeKind.SNOOZE: "snoozed",
    OutcomeKind.RELEASED: "released",
}
# One label per settled run for the per-queue counts: what became of the task.
_KIND_LABELS = {
    **_FATE_LABELS,
    OutcomeKind.SUCCEEDED: "succeeded",
    OutcomeKind.CANCELLED: "cancelled",
}
FINISHED_LABELS = ("succeeded", "retried", "dead")  # runs that ended: a queue's rate counts them


class Throughput:
    """Successes and errors per second over the last WINDOW_SECONDS, in one-second buckets."""

    def __init__(self) -> None:
        self._buckets: deque[list[float]] = deque(maxlen=WINDOW_SECONDS)  # [second, ok, failed]

    def add(self, now: float, ok: int, failed: int) -> None:
        """Count finished attempts at `now`."""
        second = float(int(now))
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += ok
            buckets[-1][2] += failed
        else:
            buckets.append([second, ok, failed])

    def at(self, second: int) -> tuple[int, int]:
        """(ok, failed) counted during `second`."""
        for bucket in reversed(self._buckets):
            if bucket[0] == second:
                return int(bucket[1]), int(bucket[2])
            if bucket[0] < second:
                break
        return 0, 0

    def rate(self, now: float, seconds: int) -> float:
        """Finished attempts per second over the last `seconds` full seconds before `now`."""
        start = int(now) - seconds
        total = sum(b[1] + b[2] for b in self._buckets if start <= b[0] < int(now))
        return total / seconds


class Timings:
    """One histogram (fixed BUCKETS, cumulative on read) and recent samples for percentiles."""

    __slots__ = ("counts", "samples", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.samples: deque[float] = deque(maxlen=SAMPLES_PER_TYPE)

    def observe(self, seconds: float) -> None:
        """Record one timing."""
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds
        self.samples.append(seconds)

    @property
    def count(self) -> int:
        """Timings observed since start."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound, observations at or below it), ending with +Inf."""
        total = 0
        buckets = []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets

    def summary(self) -> dict[str, float]:
        """count, mean, p50, p95 and p99 of the recent samples."""
        ordered = sorted(self.samples)
        return {
            "count": float(len(ordered)),
            "mean": sum(ordered) / len(ordered),
            "p50": percentile(ordered, 0.50),
            "p95": percentile(ordered, 0.95),
            "p99": percentile(ordered, 0.99),
        }


class Metrics:
    """Task counters per type and label and per queue and fate, timings per type, throughput."""

    def __init__(self) -> None:
        self.submitted: dict[str, int] = {}
        self.started: dict[str, int] = {}
        self.outcomes: dict[tuple[str, str], int] = {}
        self.by_queue: dict[tuple[str, str], int] = {}  # (queue, fate label) -> settled runs
        self.durations: dict[str, Timings] = {}
        self.waits: dict[str, Timings] = {}
        self.throughput = Throughput()

    def on_submitted(self, task_type: str, count: int = 1) -> None:
        """Count tasks accepted by the broker."""
        self.submitted[task_type] = self.submitted.get(task_type, 0) + count

    def on_started(self, task_type: str, waited: float) -> None:
        """Count one run handed to a worker `waited` seconds after it was due."""
        self.started[task_type] = self.started.get(task_type, 0) + 1
        timings = self.waits.get(task_type)
        if timings is None:
            timings = self.waits[task_type] = Timings()
        timings.observe(max(waited, 0.0))

    def on_outcome(
        self, task_type: str, outcome: Outcome, now: float, queue: str = DEFAULT_QUEUE
    ) -> None:
        """Count one settled run under its labels (and its queue's fate) and keep its duration."""
        key = (queue, _KIND_LABELS[outcome.kind])
        self.by_queue[key] = self.by_queue.get(key, 0) + 1
        for label in outcome_labels(outcome):
            key = (task_type, label)
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            if label == "succeeded":
                self.throughput.add(now, 1, 0)
            elif label in ERROR_LABELS:
                self.throughput.add(now, 0, 1)
        result = outcome.result
        if result is not None and result.status is not ResultStatus.CANCELLED:
            timings = self.durations.get(task_type)
            if timings is None:
                timings = self.durations[task_type] = Timings()
            timings.observe(result.duration)

    def queue_finished(self) -> dict[str, int]:
        """Runs that ended (succeeded, retried or dead) per queue since start."""
        finished: dict[str, int] = {}
        for (queue, label), count in self.by_queue.items():
            if label in FINISHED_LABELS:
                finished[queue] = finished.get(queue, 0) + count
        return finished

    def totals(self) -> dict[str, int]:
        """Runs per label across all types."""
        totals: dict[str, int] = {}
        for (_, label), count in self.outcomes.items():
            totals[label] = totals.get(label, 0) + count
        return totals

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything above as plain JSON-ready values."""
        totals = self.totals()
        errors = sum(totals.get(label, 0) for label in ERROR_LABELS)
        finished = errors + totals.get("succeeded", 0)
        return {
            "submitted": sum(self.submitted.values()),
            "started": sum(self.started.values()),
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
            "latency_seconds": _summaries(self.durations),
            "wait_seconds": _summaries(self.waits),
        }


def outcome_labels(outcome: Outcome) -> tuple[str, ...]:
    """The labels one settled run counts under: how the attempt ended, then what follows."""
    labels: tuple[str, ...] = ()
    if outcome.kind is OutcomeKind.SUCCEEDED:
        return ("succeeded",)
    if outcome.kind is OutcomeKind.CANCELLED:
        return ("cancelled",)
    result = outcome.result
    if result is not None and outcome.kind in (OutcomeKind.RETRY, OutcomeKind.DEAD):
        labels = (_STATUS_LABELS[result.status],)
    return (*labels, _FATE_LABELS[outcome.kind])


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an already sorted list."""
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _summaries(timings: dict[str, Timings]) -> dict[str, dict[str, float]]:
    return {name: t.summary() for name, t in sorted(timings.items()) if t.samples}
