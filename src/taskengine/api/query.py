"""Query-string parsing for list endpoints: filters, page size and cursor, with 422s."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from starlette.datastructures import QueryParams

from taskengine.api.errors import ApiError
from taskengine.brokers.base import TaskFilter
from taskengine.errors import ValidationError
from taskengine.model import Priority, TaskState
from taskengine.model.ids import check_cursor

DEFAULT_PAGE = 50
MAX_PAGE = 500


def _values(params: QueryParams, name: str) -> list[str]:
    """Repeated and comma-separated values of one parameter."""
    return [v.strip() for raw in params.getlist(name) for v in raw.split(",") if v.strip()]


def task_filter(params: QueryParams, *, states: frozenset[TaskState] | None = None) -> TaskFilter:
    """Build a TaskFilter from state, type, queue, priority, created_after, created_before."""
    if states is None:
        names = _values(params, "state")
        try:
            states = frozenset(TaskState(n.lower()) for n in names) or None
        except ValueError:
            allowed = ", ".join(s.value for s in TaskState)
            raise ApiError(422, "validation_error", f"state must be one of {allowed}") from None
    try:
        priorities = frozenset(Priority.parse(p) for p in _values(params, "priority")) or None
    except ValidationError as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    return TaskFilter(
        states=states,
        types=frozenset(_values(params, "type")) or None,
        queues=frozenset(_values(params, "queue")) or None,
        priorities=priorities,
        created_after=_time(params, "created_after"),
        created_before=_time(params, "created_before"),
    )


def page_limit(params: QueryParams) -> int:
    """The `limit` parameter: 1-500, 50 by default."""
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(422, "validation_error", f"limit must be an integer from 1 to {MAX_PAGE}")
    return limit


def cursor(params: QueryParams) -> str | None:
    """The `cursor` parameter: a task id from a previous page's next_cursor."""
    raw = params.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        return check_cursor(raw)
    except ValidationError as exc:
        raise ApiError(422, exc.code, str(exc)) from None


def _time(params: QueryParams, name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ApiError(422, "validation_error", f"{name} must be a finite time")
        return seconds
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            422, "validation_error", f"{name} must be ISO 8601 or seconds since the epoch"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
