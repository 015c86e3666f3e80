"""Tasks per second per queue over the last minute, from deltas of the collector's counters.

The hot path only increments a counter per settled run (`Metrics.by_queue`); once a second the
sampler hands this a copy of the per-queue totals. The rate is (the total now minus the total
a minute ago) / 60: the runs that ended during the last minute, per second. A process younger
than a minute counts from zero, as its counters do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

RATE_WINDOW = 60.0  # seconds


class QueueRates:
    """Keeps the per-queue totals sampled during the last minute (and the one before it)."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def observe(self, now: float, totals: Mapping[str, int]) -> None:
        """Keep the totals as of `now`; drop samples no longer needed as a baseline."""
        samples = self._samples
        samples.append((now, dict(totals)))
        start = now - RATE_WINDOW
        while len(samples) > 1 and samples[1][0] <= start:
            samples.popleft()

    def rates(self, now: float, totals: Mapping[str, int]) -> dict[str, float]:
        """Runs per second per queue over the minute before `now`, `totals` being the counts
        now; the baseline is the newest sample at least a minute old (none: zero)."""
        start = now - RATE_WINDOW
        baseline: Mapping[str, int] = {}
        for at, counts in self._samples:
            if at > start:
                break
            baseline = counts
        return {
            queue: (count - baseline.get(queue, 0)) / RATE_WINDOW
            for queue, count in sorted(totals.items())
        }
