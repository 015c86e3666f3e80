"""Flow-control limits of a task type or a queue, and the token bucket arithmetic (ADR 0038).

A `Limit` names a scope (every task of one type, or of one queue) and caps it: at most
`max_concurrency` of its tasks running at once across every instance, and at most `rate` tasks
started per second on average (a token bucket holding up to `burst` tokens). Brokers store the
limits and enforce them inside `reserve`; the arithmetic every broker shares is here, and the
Redis script repeats it in Lua (`brokers/redis/lua/reserve.lua`).
"""

from __future__ import annotations

import math
import re
from enum import StrEnum

import msgspec

from taskengine.errors import ValidationError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*\Z")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PER |= {"h": 3600.0, "hour": 3600.0}


class LimitScope(StrEnum):
    """What a limit applies to."""

    TYPE = "type"
    QUEUE = "queue"


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    """The limits of one task type or queue; None means no limit of that kind."""

    scope: LimitScope
    name: str
    max_concurrency: int | None = None
    rate: float | None = None  # tasks started per second, on average
    burst: int | None = None  # tokens the bucket holds; None: default_burst(rate)

    @property
    def empty(self) -> bool:
        """True when the limit caps nothing (storing it removes the scope's limit)."""
        return self.max_concurrency is None and self.rate is None

    @property
    def capacity(self) -> float:
        """How many tokens the bucket holds when full."""
        if self.rate is None:
            return math.inf
        return float(self.burst if self.burst is not None else default_burst(self.rate))


class QueueLimitSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One queue's limits as the settings give them (`TASKENGINE_QUEUE_LIMITS`)."""

    queue: str
    max_concurrency: int | None = None
    rate_limit: str | None = None

    def limit(self) -> Limit:
        """The Limit this asks for; ValidationError if a value is malformed."""
        rate = None if self.rate_limit is None else parse_rate(self.rate_limit)
        return check_limit_values(
            Limit(
                scope=LimitScope.QUEUE,
                name=self.queue,
                max_concurrency=self.max_concurrency,
                rate=rate,
            )
        )


def default_burst(rate: float) -> int:
    """A tenth of a second's tokens, at least one: enough for a fetch batch, not a flood."""
    return max(1, int(rate / 10))


def parse_rate(text: str) -> float:
    """Read "100/s", "30/m" or "5/h" as tasks per second; raise ValidationError otherwise."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(f"rate_limit must look like '100/s', '30/m' or '5/h', got {text!r}")
    rate = float(match.group(1)) / _PER[match.group(2)]
    if not rate > 0:
        raise ValidationError(f"rate_limit must be positive, got {text!r}")
    return rate


def check_limit_values(limit: Limit) -> Limit:
    """Return `limit` if its values are valid, else raise ValidationError."""
    if not isinstance(limit.name, str) or not limit.name:
        raise ValidationError("a limit needs the name of its type or queue")
    conc = limit.max_concurrency
    if conc is not None and (isinstance(conc, bool) or not isinstance(conc, int) or conc < 1):
        raise ValidationError(f"max_concurrency must be a positive integer, got {conc!r}")
    if limit.rate is not None and not (0 < limit.rate < math.inf):
        raise ValidationError(f"rate must be a positive number per second, got {limit.rate!r}")
    burst = limit.burst
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValidationError(f"burst must be a positive integer, got {burst!r}")
    return limit


def refill(limit: Limit, tokens: float, stamp: float, now: float) -> float:
    """The bucket's tokens at `now`, given `tokens` at `stamp` (never above its capacity)."""
    if limit.rate is None:
        return math.inf
    return min(limit.capacity, tokens + max(0.0, now - stamp) * limit.rate)


def next_token_in(limit: Limit, tokens: float) -> float:
    """Seconds until a bucket holding `tokens` holds one whole token."""
    if limit.rate is None or tokens >= 1:
        return 0.0
    return (1.0 - tokens) / limit.rate


__all__ = [
    "Limit",
    "LimitScope",
    "QueueLimitSpec",
    "check_limit_values",
    "default_burst",
    "next_token_in",
    "parse_rate",
    "refill",
]
