"""The `list_tasks` query: only the conditions a filter sets, a keyset cursor on the id."""

from __future__ import annotations

from typing import Any

from taskengine.brokers.base import TaskFilter
from taskengine.brokers.postgres import queries as q
from taskengine.model import TaskState


def list_query(filter: TaskFilter, limit: int, cursor: str | None) -> tuple[str, list[Any]]:
    """The queries.LIST template completed for `filter`, and its parameters.

    Inputs: the filter, `limit` (rows to fetch), `cursor`. Output: a template selecting the
    record columns of matching tasks, newest id first. Invariant: ids sort by creation time
    (COLLATE "C"), so `id < cursor` is a stable keyset cursor served by the primary key.
    """
    where: list[str] = []
    params: list[Any] = []

    def condition(sql: str, value: Any) -> None:
        params.append(value)
        where.append(sql.replace("?", f"${len(params)}"))

    if cursor is not None:
        condition("t.id < ?", cursor)
    if filter.states == frozenset({TaskState.DEAD}):
        where.append("t.state = 'dead'")  # a literal, so the partial index tasks_dead serves it
    elif filter.states is not None:
        condition("t.state = ANY(?::text[])", sorted(s.value for s in filter.states))
    if filter.types is not None:
        condition("t.type = ANY(?::text[])", sorted(filter.types))
    if filter.queues is not None:
        condition("t.queue = ANY(?::text[])", sorted(filter.queues))
    if filter.priorities is not None:
        condition("t.priority = ANY(?::smallint[])", sorted(int(p) for p in filter.priorities))
    if filter.workflow is not None:
        condition("t.workflow = ?", filter.workflow)
    if filter.created_after is not None:
        condition("t.created_at >= ?", float(filter.created_after))
    if filter.created_before is not None:
        condition("t.created_at < ?", float(filter.created_before))
    params.append(limit)
    template = q.LIST.replace("{where}", f"WHERE {' AND '.join(where)}" if where else "")
    return template.replace("{limit}", f"${len(params)}"), params
