"""How many workers the pool should have: a pure decision from what the pool saw."""

from __future__ import annotations

import msgspec


class PoolSample(msgspec.Struct, frozen=True, kw_only=True):
    """What the autoscaler looks at once per round."""

    size: int  # workers now
    busy: int  # workers running a task
    waiting: int  # leases buffered with no free worker
    saturated: bool  # the last reserve filled its whole limit: more work is queued
    idle_rounds: int  # rounds in a row with at most half the workers busy


def desired_size(sample: PoolSample, low: int, high: int, shrink_after: int = 10) -> int:
    """Grow by half when every worker is busy and work waits; shrink by one after idling."""
    size = sample.size
    if sample.busy >= size and (sample.waiting > 0 or sample.saturated):
        return min(high, size + max(1, size // 2))
    if sample.idle_rounds >= shrink_after and sample.busy * 2 <= size:
        return max(low, size - 1)
    return max(low, min(high, size))
