"""The figures of the JSON metrics that come from the broker alone, for the API and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskengine.brokers.base import CountRow
from taskengine.model import TaskState


def broker_figures(rows: Sequence[CountRow], buffered: int = 0) -> dict[str, Any]:
    """`queue_depth` ("queue:state" for queued and running), `queued`, and `running`: leased
    tasks less the `buffered` ones, leased by this process but not started yet."""
    depth: dict[str, int] = {}
    for row in rows:
        if row.state in (TaskState.QUEUED, TaskState.RUNNING):
            key = f"{row.queue}:{row.state}"
            depth[key] = depth.get(key, 0) + row.count
    leased = sum(row.count for row in rows if row.state is TaskState.RUNNING)
    return {
        "queue_depth": depth,
        "queued": sum(row.count for row in rows if row.state is TaskState.QUEUED),
        "running": max(leased - buffered, 0),
    }
