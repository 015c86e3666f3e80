"""Uniqueness of submissions (ADR 0038): a lock by key that answers a repeat with the holder.

Unlike an idempotency key (held for as long as the task's record is kept, and refusing a
repeat that names another request), a unique lock is held only `unique_for` seconds after the
holder's submission, or only while the holder has not run (blocked on its parents or queued:
`unique_while="queued"`) or has not finished (blocked, queued or running: `"running"`); a
repeat, whatever its payload, is answered with the holder's id and `created=False`. The key
is given, or derived from the type and the canonical JSON payload.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

import msgspec

from taskengine.errors import ValidationError
from taskengine.model.state import TaskState


class UniqueWhile(StrEnum):
    """The holder states during which a unique lock holds."""

    QUEUED = "queued"  # blocked (waiting on its parents) or queued: it has not run yet
    RUNNING = "running"  # blocked, queued or running

    @property
    def states(self) -> tuple[TaskState, ...]:
        """The states that hold the lock."""
        if self is UniqueWhile.QUEUED:
            return (TaskState.BLOCKED, TaskState.QUEUED)
        return (TaskState.BLOCKED, TaskState.QUEUED, TaskState.RUNNING)


class UniqueLock(msgspec.Struct, frozen=True, kw_only=True):
    """The lock one submission takes: held `seconds` from the broker's `now` at enqueue, or
    while the holder is in one of `states`."""

    key: str
    seconds: float | None = None
    states: tuple[TaskState, ...] = ()

    def until(self, now: float) -> float | None:
        """When a lock taken at `now` stops holding by time (None: by state)."""
        return None if self.seconds is None else now + self.seconds


def unique_lock(
    type_name: str,
    payload: Any,
    *,
    unique_for: float | None = None,
    unique_while: UniqueWhile | str | None = None,
    unique_key: str | None = None,
) -> UniqueLock | None:
    """The lock a submission asks for, or None; ValidationError if the options conflict."""
    if unique_for is None and unique_while is None:
        if unique_key is not None:
            raise ValidationError("unique_key needs unique_for or unique_while")
        return None
    if unique_for is not None and unique_while is not None:
        raise ValidationError("give unique_for or unique_while, not both")
    if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
        raise ValidationError("unique_key must be a non-empty string")
    if unique_key is not None and "\x00" in unique_key:
        raise ValidationError("unique_key must not contain a NUL character")
    if unique_key is None:
        try:
            canonical = msgspec.json.encode(payload, order="sorted")
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"payload is not JSON: {exc}") from None
        digest = hashlib.blake2b(canonical, digest_size=16).hexdigest()
        unique_key = f"{type_name}:{digest}"
    else:
        unique_key = f"{type_name}:key:{unique_key}"
    if unique_for is not None:
        if isinstance(unique_for, bool) or not isinstance(unique_for, int | float):
            raise ValidationError(f"unique_for must be seconds, got {unique_for!r}")
        if not 0 < unique_for < 10**9:
            raise ValidationError(f"unique_for must be positive seconds, got {unique_for!r}")
        return UniqueLock(key=unique_key, seconds=float(unique_for))
    try:
        states = UniqueWhile(str(unique_while)).states
    except ValueError:
        raise ValidationError(
            f"unique_while must be 'queued' or 'running', got {unique_while!r}"
        ) from None
    return UniqueLock(key=unique_key, states=states)


def lock_holds(
    until: float | None, states: tuple[TaskState, ...], holder: TaskState | None, now: float
) -> bool:
    """Whether a stored lock still holds: its time not past, or its holder in its states."""
    if holder is None:
        return False
    if until is not None:
        return now < until
    return holder in states


def encode_states(states: tuple[TaskState, ...]) -> str:
    """States as stored beside a lock: comma-separated."""
    return ",".join(states)


def decode_states(text: str | None) -> tuple[TaskState, ...]:
    """States from their stored form."""
    return tuple(TaskState(s) for s in text.split(",")) if text else ()


__all__ = [
    "UniqueLock",
    "UniqueWhile",
    "decode_states",
    "encode_states",
    "lock_holds",
    "unique_lock",
]
