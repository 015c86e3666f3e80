"""Periodic tasks: cron entries and the slots they are due at, as pure functions of time.

Slots are computed in UTC. Each slot has a key (`cron:<name>:<epoch seconds>`) used as the
task's idempotency key, so the broker stores one task per slot however many instances try.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from taskengine.errors import ValidationError
from taskengine.model.task import validate_name


class CronEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A task submitted at every slot of a cron expression."""

    name: str  # unique among entries: part of every slot's idempotency key
    cron: str  # five fields (minute hour day month weekday), or six with seconds last
    type: str
    payload: Any = None
    priority: str | None = None  # None: the task type's default
    queue: str | None = None

    def __post_init__(self) -> None:
        validate_name("periodic task name", self.name)
        validate_name("task type", self.type)
        from croniter import croniter  # imported only where periodic tasks exist: ~4 MB

        if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
            raise ValidationError(f"invalid cron expression {self.cron!r} for {self.name!r}")


def due_slots(cron: str, after: float, until: float, limit: int = 100) -> list[float]:
    """The slots of `cron` in (after, until], oldest first, at most `limit`."""
    from croniter import croniter

    slots: list[float] = []
    schedule = croniter(cron, datetime.fromtimestamp(after, UTC))  # UTC whatever the host's zone
    while len(slots) < limit:
        slot = float(schedule.get_next(float))
        if slot > until:
            break
        slots.append(slot)
    return slots


def next_slot(cron: str, after: float) -> float:
    """The first slot of `cron` after `after`."""
    from croniter import croniter

    return float(croniter(cron, datetime.fromtimestamp(after, UTC)).get_next(float))


def slot_key(name: str, slot: float) -> str:
    """The idempotency key of one slot of one entry."""
    return f"cron:{name}:{int(slot)}"


def check_unique(entries: list[CronEntry]) -> None:
    """Raise ValidationError if two entries share a name."""
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ValidationError(f"two periodic tasks are named {entry.name!r}")
        seen.add(entry.name)
