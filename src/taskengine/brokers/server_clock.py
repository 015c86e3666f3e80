"""The broker server's clock, for brokers shared by hosts whose clocks may disagree (ADR 0006).

Redis and PostgreSQL read their server's time (Redis `TIME`, PostgreSQL `clock_timestamp()`)
at start and every `REFRESH` seconds after, and carry it forward in between with this
process's monotonic clock, which stepping the wall clock does not move. Each call then uses
that time as its "now" for what the broker decides (lease expiry, the times it records), so
every host decides by one clock: it is off by at most half the round trip of the last read
plus the monotonic clock's drift since then (milliseconds; 0.1-0.2 s seen under load),
whatever the hosts' own wall clocks say. Readiness, where the difference between two
processes' estimates would delay a task to a later poll, is judged by the server's clock read
inside the reserve and enqueue themselves (ADR 0006, amendment), not by this estimate. No lock
is held across the read: two calls that find the reading stale both read, and the later
reading wins.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from taskengine.errors import ConfigurationError

REFRESH = 30.0  # seconds between two readings of the server's time
TRUE_WORDS = {"true": True, "1": True, "yes": True, "on": True}
FALSE_WORDS = {"false": False, "0": False, "no": False, "off": False}


class ServerClock:
    """The server's time, read now and then and carried forward by the monotonic clock."""

    def __init__(
        self,
        read: Callable[[], Awaitable[float]],
        *,
        refresh: float = REFRESH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._refresh = refresh
        self._monotonic = monotonic
        self._server: float | None = None  # the server's time at the last reading
        self._at = 0.0  # the monotonic time of that reading (the middle of its round trip)

    async def sync(self) -> None:
        """Read the server's time (one round trip)."""
        sent = self._monotonic()
        server = await self._read()
        received = self._monotonic()
        self._server, self._at = server, (sent + received) / 2

    async def now(self) -> float:
        """The server's time now; reads it first if the last reading is missing or stale."""
        if self._server is None or self._monotonic() - self._at >= self._refresh:
            await self.sync()
        assert self._server is not None
        return self._server + (self._monotonic() - self._at)


def flag(name: str, value: bool | str) -> bool:
    """A boolean broker option given as a bool or as URL text ("true", "false", "1", ...)."""
    if isinstance(value, bool):
        return value
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name} must be true or false: {value!r}")


__all__ = ["REFRESH", "ServerClock", "flag"]
