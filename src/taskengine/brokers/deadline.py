"""The deadline of a call to a broker on a server: the `timeout` URL option and its default.

Every call of the Redis and PostgreSQL brokers gives up after this many seconds and raises
BrokerUnavailable, so a half-open connection cannot stall a loop (heartbeat, fetcher,
completer) past its lease; see docs/adr/0007-broker-deadlines.md for what each broker bounds.
"""

from __future__ import annotations

import math

from taskengine.errors import ConfigurationError

DEFAULT_TIMEOUT = 5.0  # seconds: well under the 10 s heartbeat and the 30 s lease
TIMEOUT_PARAM = "timeout"  # the URL query option, e.g. redis://host/0?timeout=2


def parse_timeout(given: object, in_url: str | None) -> float:
    """The deadline from the keyword (`open_broker` passes Settings.broker_timeout) or the URL,
    which must agree where both give one; DEFAULT_TIMEOUT if neither does."""
    values = [_seconds(v) for v in (given, in_url) if v is not None]
    if len(values) == 2 and values[0] != values[1]:
        raise ConfigurationError(f"timeout is {given!r} but the URL says {in_url!r}")
    return values[0] if values else DEFAULT_TIMEOUT


def _seconds(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]  # str, int or float; checked below
    except (TypeError, ValueError):
        raise ConfigurationError(f"timeout must be a number of seconds: {value!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigurationError(f"timeout must be positive and finite: {value!r}")
    return seconds
