"""The lookups the in-memory broker runs over its dicts and heaps: its equivalent of SQL."""

from __future__ import annotations

from collections.abc import Iterable

from taskengine.brokers.base import CountRow, TaskFilter
from taskengine.model import Priority, TaskRecord, TaskState

Heap = list[tuple[float, str]]


def lowest(heaps: Iterable[Heap]) -> Heap | None:
    """The heap whose head is lowest (None if all are empty)."""
    best: Heap | None = None
    for heap in heaps:
        if heap and (best is None or heap[0] < best[0]):
            best = heap
    return best


def matches(record: TaskRecord, f: TaskFilter, cursor: str | None) -> bool:
    """Whether `record` passes the filter and lies below the cursor."""
    return (
        (cursor is None or record.id < cursor)
        and (f.states is None or record.state in f.states)
        and (f.types is None or record.type in f.types)
        and (f.queues is None or record.queue in f.queues)
        and (f.priorities is None or record.priority in f.priorities)
        and (f.created_after is None or record.created_at >= f.created_after)
        and (f.created_before is None or record.created_at < f.created_before)
        and (f.workflow is None or record.workflow == f.workflow)
    )


def count_rows(records: Iterable[TaskRecord]) -> list[CountRow]:
    """Counts per (queue, state, priority), ordered so, with the oldest queued one's creation."""
    groups: dict[tuple[str, TaskState, int], tuple[int, float]] = {}
    for r in records:
        key = (r.queue, r.state, r.priority)
        count, oldest = groups.get(key, (0, r.created_at))
        groups[key] = (count + 1, min(oldest, r.created_at))
    return [
        CountRow(
            queue,
            state,
            Priority(priority),
            count,
            oldest if state is TaskState.QUEUED else None,
        )
        for (queue, state, priority), (count, oldest) in sorted(groups.items())
    ]
