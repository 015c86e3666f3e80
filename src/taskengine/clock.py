"""Every "now" in the engine comes from a Clock: wall time in seconds since the epoch."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, in seconds since the Unix epoch."""

    def now(self) -> float:
        """Return the current time."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        """Return `time.time()`."""
        return time.time()


class FakeClock:
    """A clock that moves only when told to, for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the fake current time."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` and return the new time."""
        if seconds < 0:
            raise ValueError("a clock never moves backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to `when` (not earlier than now)."""
        if when < self._now:
            raise ValueError("a clock never moves backwards")
        self._now = when


SYSTEM_CLOCK = SystemClock()
