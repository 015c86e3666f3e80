"""Circuit breakers per key (a task type, an HTTP host): pure state machines driven by `now`.

CLOSED lets calls through and counts them. It opens after `consecutive_failures` failures in a
row, or when the sliding `window` holds at least `min_calls` calls of which at least
`failure_rate` failed. OPEN refuses calls for `open_for` seconds, then becomes HALF_OPEN, which
lets up to `half_open_probes` probe calls through: a success closes the breaker (counters reset),
a failure opens it again for `open_for`. A probe that never reports back frees its slot after
`open_for`, or at once through `release`.

The window is kept as at most `WINDOW_BUCKETS` per-slice counters (each `window /
WINDOW_BUCKETS` seconds wide), so memory stays flat whatever the call rate; it forgets calls at
slice granularity. `BreakerRegistry` bounds the number of keys. Not thread-safe: one event loop
owns a registry.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from enum import StrEnum

import msgspec

from taskengine.errors import ValidationError

__all__ = [
    "WINDOW_BUCKETS",
    "BreakerConfig",
    "BreakerRegistry",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
]

WINDOW_BUCKETS = 60


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """When a breaker opens, and for how long; times in seconds."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    min_calls: int = 20
    window: float = 60.0
    open_for: float = 30.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        """Raise ValidationError unless every field is in range."""
        for name in ("consecutive_failures", "min_calls", "half_open_probes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"breaker {name} must be an integer >= 1, not {value!r}")
        for name in ("failure_rate", "window", "open_for"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"breaker {name} must be a number, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValidationError(f"breaker {name} must be finite and > 0, not {value!r}")
        if self.failure_rate > 1:
            raise ValidationError(f"breaker failure_rate {self.failure_rate!r} must be <= 1")


class BreakerState(StrEnum):
    """Where a breaker is: letting calls through, refusing them, or probing."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A breaker as the dashboard shows it."""

    state: BreakerState
    consecutive_failures: int
    window_calls: int
    window_failures: int
    opened_at: float | None
    retry_after: float
    probes_in_flight: int


class CircuitBreaker:
    """One breaker: ask `allow(now)` before a call, then report how it went."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._width = self.config.window / WINDOW_BUCKETS
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        # [slice number, calls, failures], oldest first; at most WINDOW_BUCKETS entries.
        self._buckets: deque[list[int]] = deque()
        self._calls = 0
        self._failures = 0
        self._opened_at: float | None = None
        self._open_until = 0.0
        self._probes = 0
        self._probe_deadline = 0.0

    @property
    def is_closed(self) -> bool:
        """Tell whether the breaker is closed (no clock needed: OPEN only ever moves on)."""
        return self._state is BreakerState.CLOSED

    def state(self, now: float) -> BreakerState:
        """Return the state at `now`; an OPEN breaker turns HALF_OPEN once `open_for` passed."""
        self._advance(now)
        return self._state

    def allow(self, now: float) -> bool:
        """Tell whether a call may go ahead now; in HALF_OPEN a True takes a probe slot."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN or self._probes >= self.config.half_open_probes:
            return False
        if self._probes == 0:
            self._probe_deadline = now + self.config.open_for
        self._probes += 1
        return True

    def record_success(self, now: float) -> None:
        """Report a call that succeeded; a successful probe closes the breaker."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            self._close()
        elif self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._count(now, failed=False)
        # OPEN: a late result of a call made before the breaker opened changes nothing.

    def record_failure(self, now: float) -> None:
        """Report a call that failed; may open the breaker (or reopen it from HALF_OPEN)."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            self._open(now)
        elif self._state is BreakerState.CLOSED:
            self._consecutive += 1
            self._count(now, failed=True)
            if self._tripped():
                self._open(now)
        # OPEN: a late failure does not extend the open period.

    def release(self, now: float) -> None:
        """Hand back a probe slot taken by `allow` whose call ended with no verdict."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN and self._probes > 0:
            self._probes -= 1

    def retry_after(self, now: float) -> float:
        """Return seconds until a call (or a probe) may be tried; 0 when one may go now."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return 0.0
        if self._state is BreakerState.OPEN:
            return max(0.0, self._open_until - now)
        if self._probes < self.config.half_open_probes:
            return 0.0
        return max(0.0, self._probe_deadline - now)

    def snapshot(self, now: float) -> BreakerSnapshot:
        """Return the breaker's state and counters at `now`."""
        self._advance(now)
        self._prune(now)
        return BreakerSnapshot(
            state=self._state,
            consecutive_failures=self._consecutive,
            window_calls=self._calls,
            window_failures=self._failures,
            opened_at=self._opened_at,
            retry_after=self.retry_after(now),
            probes_in_flight=self._probes,
        )

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN:
            if now >= self._open_until:
                self._state = BreakerState.HALF_OPEN
                self._probes = 0
        elif (
            self._state is BreakerState.HALF_OPEN
            and self._probes >= self.config.half_open_probes
            and now >= self._probe_deadline
        ):
            self._probes = 0  # the probes never reported back: let new ones through

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._open_until = now + self.config.open_for
        self._probes = 0

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._opened_at = None
        self._probes = 0
        self._consecutive = 0
        self._buckets.clear()
        self._calls = self._failures = 0

    def _tripped(self) -> bool:
        config = self.config
        if self._consecutive >= config.consecutive_failures:
            return True
        if self._calls < config.min_calls:
            return False
        return self._failures >= config.failure_rate * self._calls

    def _count(self, now: float, *, failed: bool) -> None:
        self._prune(now)
        slot = math.floor(now / self._width)
        if self._buckets and self._buckets[-1][0] >= slot:
            bucket = self._buckets[-1]  # same slice (or a clock that stepped back): add to it
        else:
            bucket = [slot, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        self._calls += 1
        if failed:
            bucket[2] += 1
            self._failures += 1

    def _prune(self, now: float) -> None:
        oldest = math.floor(now / self._width) - WINDOW_BUCKETS + 1
        while self._buckets and self._buckets[0][0] < oldest:
            _, calls, failures = self._buckets.popleft()
            self._calls -= calls
            self._failures -= failures


class BreakerRegistry:
    """Breakers by key, made on first use with one config; at most `max_keys` are kept."""

    SCAN_FOR_CLOSED = 64

    def __init__(self, config: BreakerConfig | None = None, *, max_keys: int = 10_000) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValidationError(f"max_keys must be an integer >= 1, not {max_keys!r}")
        self.config = config or BreakerConfig()
        self.max_keys = max_keys
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def get(self, key: str) -> CircuitBreaker:
        """Return the breaker for `key`, making it if needed; marks it recently used."""
        breaker = self._breakers.get(key)
        if breaker is not None:
            self._breakers.move_to_end(key)
            return breaker
        if len(self._breakers) >= self.max_keys:
            self._evict()
        breaker = self._breakers[key] = CircuitBreaker(self.config)
        return breaker

    def peek(self, key: str) -> CircuitBreaker | None:
        """Return the breaker for `key` if there is one, without making or touching it."""
        return self._breakers.get(key)

    def snapshots(self, now: float) -> dict[str, BreakerSnapshot]:
        """Return every breaker's snapshot at `now`, least recently used first."""
        return {key: breaker.snapshot(now) for key, breaker in self._breakers.items()}

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, key: object) -> bool:
        return key in self._breakers

    def _evict(self) -> None:
        # Prefer the least recently used closed breaker among the oldest few (bounded work);
        # if all of those are open or probing, the least recently used goes anyway: the bound
        # on memory holds even when every key is failing.
        victim = next(iter(self._breakers))
        for scanned, (key, breaker) in enumerate(self._breakers.items()):
            if scanned >= self.SCAN_FOR_CLOSED:
                break
            if breaker.is_closed:
                victim = key
                break
        del self._breakers[victim]
