"""Query-string parsing for list endpoints: filters, page size and cursor, with 422s.

Each parameter's grammar is defined here once, as the pattern the OpenAPI document publishes
(`openapi.py` builds the list parameters from these), so what the document calls valid is what
the parser takes, and everything else is a 422.
"""

from __future__ import annotations

import re

from starlette.datastructures import QueryParams

from taskengine.api.errors import ApiError
from taskengine.api.times import SECONDS_PATTERN, parse_date_time, parse_seconds
from taskengine.brokers.base import TaskFilter
from taskengine.errors import ValidationError
from taskengine.model import Priority, TaskState
from taskengine.model.ids import check_cursor

DEFAULT_PAGE = 50
MAX_PAGE = 500
NAME = r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}"
STATE_NAMES = [s.value for s in TaskState] + [s.value.upper() for s in TaskState]
PRIORITY_NAMES = [p.name for p in reversed(Priority)] + [p.name.lower() for p in reversed(Priority)]


def _list_of(item: str) -> str:
    return f"^(?:{item})(?:,(?:{item}))*$"


# name -> pattern of one value; a filter repeats (`?state=a&state=b`) or lists (`?state=a,b`)
FILTERS = {
    "state": _list_of("|".join(STATE_NAMES)),
    "type": _list_of(NAME),
    "queue": _list_of(NAME),
    "priority": _list_of("|".join(PRIORITY_NAMES)),
}
LIMIT_PATTERN = r"^[0-9]{1,3}$"
TIME_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": SECONDS_PATTERN},
    ]
}
_COMPILED = {name: re.compile(pattern) for name, pattern in FILTERS.items()}
_LIMIT = re.compile(LIMIT_PATTERN)
_HINTS = {
    "state": "one or more of " + ", ".join(s.value for s in TaskState),
    "type": "task type names",
    "queue": "queue names",
    "priority": "one or more of HIGH, NORMAL, LOW",
}


def _values(params: QueryParams, name: str) -> list[str]:
    """Repeated and comma-separated values of one filter; 422 unless each fits its pattern."""
    values = []
    for raw in params.getlist(name):
        if _COMPILED[name].fullmatch(raw) is None:
            raise ApiError(
                422, "validation_error", f"{name} must be {_HINTS[name]}, comma-separated"
            )
        values.extend(raw.split(","))
    return values


def task_filter(params: QueryParams, *, states: frozenset[TaskState] | None = None) -> TaskFilter:
    """Build a TaskFilter from state, type, queue, priority, created_after, created_before."""
    if states is None:
        states = frozenset(TaskState(n.lower()) for n in _values(params, "state")) or None
    return TaskFilter(
        states=states,
        types=frozenset(_values(params, "type")) or None,
        queues=frozenset(_values(params, "queue")) or None,
        priorities=frozenset(Priority[p.upper()] for p in _values(params, "priority")) or None,
        created_after=_time(params, "created_after"),
        created_before=_time(params, "created_before"),
    )


def page_limit(params: QueryParams) -> int:
    """The `limit` parameter: 1-500, 50 by default."""
    raw = params.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    limit = int(raw) if _LIMIT.fullmatch(raw) else 0
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(422, "validation_error", f"limit must be an integer from 1 to {MAX_PAGE}")
    return limit


def cursor(params: QueryParams) -> str | None:
    """The `cursor` parameter: a task id from a previous page's next_cursor."""
    raw = params.get("cursor")
    if raw is None:
        return None
    try:
        return check_cursor(raw)
    except ValidationError as exc:
        raise ApiError(422, exc.code, str(exc)) from None


def _time(params: QueryParams, name: str) -> float | None:
    """An RFC 3339 date-time or epoch seconds (see `TIME_SCHEMA`); 422 for anything else."""
    raw = params.get(name)
    if raw is None:
        return None
    for parse in (parse_seconds, parse_date_time):
        try:
            return parse(raw)
        except ValueError:
            continue
    raise ApiError(
        422,
        "validation_error",
        f"{name} must be an RFC 3339 date-time with an offset (2026-01-31T12:00:00Z) "
        "or seconds since the epoch",
    )
