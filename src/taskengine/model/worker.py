"""What the worker registry holds of one worker."""

from __future__ import annotations

import msgspec


class TypeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A task type as an instance registered it (the operator's task-types view)."""

    name: str
    executor: str
    timeout: float
    max_attempts: int
    queue: str
    priority: str


class PeriodicInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A periodic task as the scheduler's leader runs it."""

    name: str
    cron: str
    type: str
    last_fired: float | None = None  # the last slot this leader submitted


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One worker's state as last reported by its instance's heartbeat."""

    id: str
    instance: str
    host: str
    pid: int
    state: str  # idle | busy | stopping
    current_task: str | None = None
    processed: int = 0
    busy_seconds: float = 0.0
    started_at: float
    last_seen: float
    types: tuple[str, ...] = ()  # the task types its instance runs (rolling deploys)
    draining: bool = False  # its instance takes no tasks (remote control, ADR 0036)
    # Set on one worker per instance only (its lowest number), so they are stored once:
    type_info: tuple[TypeInfo, ...] = ()  # its instance's task types in full
    periodic: tuple[PeriodicInfo, ...] | None = None  # set while its instance leads the scheduler
