"""Retry as a pure decision: exponential backoff with full jitter, and what a failure comes to.

The delay after failed attempt n is drawn uniformly from [0, min(cap, base * factor ** (n - 1))]
("full jitter"), which spreads a burst of failures evenly instead of retrying in lockstep. The
decision takes `now` and a `random.Random`; it never reads the clock or global randomness.

Handlers steer the decision by raising `Retry(delay)` (retry after that delay instead of the
backoff, still within max attempts) or `NoRetry` (dead-letter now). The runtime
catches them and passes `requested_delay` / `retryable=False` to `decide_failure`.
"""

from __future__ import annotations

import math
import random
from typing import Literal

import msgspec

from taskengine.errors import ValidationError
from taskengine.model.task import MAX_TIMEOUT

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "MAX_REQUESTED_DELAY",
    "FailureDecision",
    "NoRetry",
    "Retry",
    "RetryPolicy",
    "Snooze",
    "backoff_ceiling",
    "backoff_delay",
    "decide_failure",
]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Exponential backoff: base delay (s), growth factor per attempt, and the cap (s)."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0

    def __post_init__(self) -> None:
        """Raise ValidationError unless base > 0, factor >= 1 and cap >= base, all finite."""
        for name in ("base", "factor", "cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"retry {name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ValidationError(f"retry {name} must be finite, not {value!r}")
        if self.base <= 0:
            raise ValidationError(f"retry base {self.base!r} must be > 0")
        if self.factor < 1:
            raise ValidationError(f"retry factor {self.factor!r} must be >= 1")
        if self.cap < self.base:
            raise ValidationError(f"retry cap {self.cap!r} must be >= base {self.base!r}")


DEFAULT_RETRY_POLICY = RetryPolicy()
MAX_REQUESTED_DELAY = MAX_TIMEOUT * 52  # the longest delay a task may be submitted with


class FailureDecision(msgspec.Struct, frozen=True):
    """What a failed attempt comes to: retry at `run_at`, or dead (dead-letter, no run_at)."""

    kind: Literal["retry", "dead"]
    run_at: float | None
    reason: str


class Retry(Exception):
    """Raised by a handler to ask for a retry after `delay` seconds (None: the usual backoff)."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        if delay is not None:
            _check_delay(delay)
        self.delay: float | None = None if delay is None else float(delay)
        self.reason = reason
        super().__init__(reason or _describe_request(self.delay))


class Snooze(Exception):
    """Raised by a handler that did not really run (a dependency is unavailable): run the task
    again after `delay` seconds without spending an attempt."""

    def __init__(self, delay: float, reason: str = "") -> None:
        _check_delay(delay)
        self.delay = float(delay)
        self.reason = reason
        super().__init__(reason or f"snoozed for {self.delay:g} s")


class NoRetry(Exception):
    """Raised by a handler to fail now and dead-letter the task without further attempts."""


def backoff_ceiling(attempt: int, policy: RetryPolicy) -> float:
    """Return the upper bound of the delay after failed attempt `attempt` (1-based)."""
    _check_attempt(attempt, "attempt")
    exponent = attempt - 1
    if exponent == 0 or policy.factor == 1:
        return policy.base
    # Compare in log space first so huge attempt numbers never reach the float power.
    # `exponent` stays an int: int-vs-float comparison is exact and cannot overflow.
    reaches_cap = (math.log(policy.cap) - math.log(policy.base)) / math.log(policy.factor)
    if exponent >= reaches_cap:
        return policy.cap
    return min(policy.cap, policy.base * policy.factor**exponent)


def backoff_delay(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Return a full-jitter delay in [0, backoff_ceiling(attempt, policy)] seconds."""
    ceiling = backoff_ceiling(attempt, policy)
    return min(ceiling, rng.uniform(0.0, ceiling))


def decide_failure(
    attempt: int,
    max_attempts: int,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
    *,
    retryable: bool = True,
    requested_delay: float | None = None,
) -> FailureDecision:
    """Decide whether failed attempt `attempt` of `max_attempts` is retried (and when) or dead."""
    _check_attempt(attempt, "attempt")
    _check_attempt(max_attempts, "max_attempts")
    if not retryable:
        return FailureDecision("dead", None, "not retryable")
    if attempt >= max_attempts:
        return FailureDecision("dead", None, f"attempts exhausted ({attempt} of {max_attempts})")
    if requested_delay is not None:
        _check_delay(requested_delay)
        delay = float(requested_delay)
        reason = f"{_describe_request(delay)} after attempt {attempt} of {max_attempts}"
    else:
        delay = backoff_delay(attempt, policy, rng)
        reason = f"backoff {delay:.3f} s after attempt {attempt} of {max_attempts}"
    return FailureDecision("retry", now + delay, reason)


def _check_attempt(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValidationError(f"{name} must be >= 1, not {value!r}")


def _check_delay(delay: float) -> None:
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise ValidationError(f"retry delay must be a number, not {delay!r}")
    if not 0 <= delay <= MAX_REQUESTED_DELAY:  # also refuses NaN
        raise ValidationError(f"retry delay {delay!r} must be between 0 and one year")


def _describe_request(delay: float | None) -> str:
    if delay is None:
        return "retry requested"
    return f"retry requested in {delay:g} s"
