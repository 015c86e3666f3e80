"""Task types this instance does not run: given back while another live instance runs them
(a rolling deploy), dead-lettered once none has for a grace period."""

from __future__ import annotations

from collections.abc import Iterable

from taskengine.model.worker import WorkerInfo

SNOOZE_FOR = 5.0  # how long a task of an unknown type waits before any instance takes it again


class KnownTypes:
    """What the worker registry says the live instances run, and since when nobody has run a
    type this instance was handed."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.wanted = False  # a task of an unknown type was seen: the heartbeat reads the registry
        self._elsewhere: frozenset[str] = frozenset()
        self._missing_since: dict[str, float] = {}

    def update(self, workers: Iterable[WorkerInfo]) -> None:
        """Take the task types the live workers of every instance report."""
        self._elsewhere = frozenset(name for worker in workers for name in worker.types)
        for name in self._elsewhere.intersection(self._missing_since):
            del self._missing_since[name]
        self.wanted = bool(self._missing_since)

    def retry_at(self, name: str, now: float) -> float | None:
        """When a task of type `name` (not run here) may be taken again; None: dead-letter it,
        no live instance has run the type for `grace` seconds."""
        self.wanted = True
        if name in self._elsewhere:
            return now + SNOOZE_FOR
        since = self._missing_since.setdefault(name, now)
        if now - since < self.grace:
            return now + min(SNOOZE_FOR, self.grace)
        return None
