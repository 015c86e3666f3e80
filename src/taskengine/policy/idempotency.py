"""The idempotency rule as a pure decision: a key names one request, compared as canonical JSON.

A repeated key with the same request (type, payload, priority, queue) returns the first task;
with another request it is a conflict. Requests are compared by their canonical JSON (keys
sorted, numbers as written), not with Python's `==`, for which `[1]`, `[1.0]` and `[true]` are
equal although they are three different payloads.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from taskengine.errors import IdempotencyConflict
from taskengine.model import Task

_canonical = msgspec.json.Encoder(order="sorted")


def fingerprint(task: Task) -> bytes:
    """The canonical JSON of what a key stands for: type, payload, priority and queue."""
    return _canonical.encode([task.type, task.payload, int(task.priority), task.queue])


def check_batch(tasks: Sequence[Task]) -> None:
    """Raise IdempotencyConflict if one key comes twice in `tasks` with different requests."""
    seen: dict[str, tuple[int, bytes]] = {}
    for index, task in enumerate(tasks):
        key = task.idempotency_key
        if key is None:
            continue
        mine = fingerprint(task)
        first = seen.setdefault(key, (index, mine))
        if first[1] != mine:
            raise IdempotencyConflict(
                f"tasks[{index}]: idempotency key {key!r} was already used for another task "
                f"(tasks[{first[0]}]) in this batch",
                key=key,
            )


def check_repeat(task: Task, existing: Task, existing_id: str, where: str = "") -> None:
    """Raise IdempotencyConflict unless `existing`, stored under `task`'s key, is the same
    request. `where` prefixes the message (the item of a batch)."""
    if fingerprint(task) != fingerprint(existing):
        key = task.idempotency_key or ""
        raise IdempotencyConflict(
            f"{where}idempotency key {key!r} was already used for another task ({existing_id})",
            key=key,
            existing_id=existing_id,
        )
