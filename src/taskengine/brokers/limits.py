"""The admission check of one `reserve` call under the stored limits (ADR 0038).

Memory, SQLite and PostgreSQL build a `Gate` inside their atomic reserve (the event loop, the
write transaction, the transaction holding the limit rows' locks) from the stored limits, the
running count of each limited scope and the stored buckets; the Redis script does the same in
Lua. A task is admitted only if its type's and its queue's limits both have room; admitting it
takes a concurrency slot and a token from each.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from taskengine.model.limits import Limit, LimitScope, next_token_in, refill

ScopeKey = tuple[str, str]  # (scope, name)


class Gate:
    """One reserve call's view of the limits: admits tasks while their scopes have room."""

    def __init__(
        self,
        limits: Iterable[Limit],
        running: Mapping[ScopeKey, int],
        buckets: Mapping[ScopeKey, tuple[float, float]],
        now: float,
    ) -> None:
        self._limits = {(str(limit.scope), limit.name): limit for limit in limits}
        self._now = now
        self._slots: dict[ScopeKey, float] = {}
        self._tokens: dict[ScopeKey, float] = {}
        for key, limit in self._limits.items():
            if limit.max_concurrency is not None:
                self._slots[key] = limit.max_concurrency - running.get(key, 0)
            if limit.rate is not None:
                tokens, stamp = buckets.get(key, (limit.capacity, now))
                self._tokens[key] = refill(limit, tokens, stamp, now)
        self._wait: float | None = None

    @property
    def active(self) -> bool:
        """True when some limit is stored (else every task is admitted)."""
        return bool(self._limits)

    def admit(self, type_name: str, queue: str) -> bool:
        """Take a slot and a token of the task's type and queue if both have room."""
        keys = ((str(LimitScope.TYPE), type_name), (str(LimitScope.QUEUE), queue))
        for key in keys:
            if self._slots.get(key, math.inf) < 1:
                return False
        for key in keys:
            tokens = self._tokens.get(key, math.inf)
            if tokens < 1:
                wait = next_token_in(self._limits[key], tokens)
                self._wait = wait if self._wait is None else min(self._wait, wait)
                return False
        for key in keys:
            if key in self._slots:
                self._slots[key] -= 1
            if key in self._tokens:
                self._tokens[key] -= 1
        return True

    def full(self, scope: LimitScope) -> list[str]:
        """Names of this scope that admit nothing now (no slot, or no token)."""
        prefix = str(scope)
        names = {name for (s, name), room in self._slots.items() if s == prefix and room < 1}
        names |= {name for (s, name), tok in self._tokens.items() if s == prefix and tok < 1}
        return sorted(names)

    def note_held_back(self) -> None:
        """Record the wait of every empty bucket: tasks of a full scope were skipped unseen."""
        for key, tokens in self._tokens.items():
            if tokens < 1 and self._slots.get(key, math.inf) >= 1:
                wait = next_token_in(self._limits[key], tokens)
                self._wait = wait if self._wait is None else min(self._wait, wait)

    def buckets(self) -> dict[ScopeKey, tuple[float, float]]:
        """Every rate-limited scope's bucket after this call: (tokens, now)."""
        return {key: (tokens, self._now) for key, tokens in self._tokens.items()}

    @property
    def retry_in(self) -> float | None:
        """Seconds until a task held back by an empty bucket could be admitted, if any was."""
        return self._wait


__all__ = ["Gate", "ScopeKey"]
