"""What the worker registry holds of one worker."""

from __future__ import annotations

import msgspec


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
