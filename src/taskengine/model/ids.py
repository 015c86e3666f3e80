"""Time-sortable unique ids: ULID layout, 48-bit milliseconds + 80 random bits in base32."""

from __future__ import annotations

import os
import random
import re

from taskengine.errors import ValidationError

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, which sorts like the value
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters
# Our own generator, seeded from the OS and again in every forked child: a user's
# random.seed() must never make two processes (or two runs) draw the same ids.
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)
# What `new_id` can make: 48 bits of milliseconds fill 10 characters, so the first is 0-7.
TASK_ID_PATTERN = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$"
_TASK_ID = re.compile(TASK_ID_PATTERN)
_MAX_MS = (1 << 48) - 1
_last: tuple[int, str] = (-1, "")  # one object, so threads never see half an update


def _time_prefix(ms: int) -> str:
    """The 10 characters of a millisecond timestamp (cached: ids come in bursts)."""
    global _last
    cached_ms, prefix = _last
    if ms != cached_ms:
        chars = []
        value = ms
        for _ in range(10):
            chars.append(_ALPHABET[value & 31])
            value >>= 5
        prefix = "".join(reversed(chars))
        _last = (ms, prefix)
    return prefix


def new_id(now: float) -> str:
    """Return a 26-character id whose lexical order follows `now` to the millisecond."""
    ms = int(now * 1000)
    if not 0 <= ms <= _MAX_MS:
        raise ValueError(f"time {now!r} is outside the id range")
    # 80 random bits are exactly 16 base32 characters, two per 10 bits (a third of the
    # cost of base64.b32encode on os.urandom, which was a tenth of the submit path).
    bits = _random.getrandbits(80)
    return (
        _time_prefix(ms)
        + _PAIRS[bits >> 70]
        + _PAIRS[(bits >> 60) & 1023]
        + _PAIRS[(bits >> 50) & 1023]
        + _PAIRS[(bits >> 40) & 1023]
        + _PAIRS[(bits >> 30) & 1023]
        + _PAIRS[(bits >> 20) & 1023]
        + _PAIRS[(bits >> 10) & 1023]
        + _PAIRS[bits & 1023]
    )


def is_task_id(value: str) -> bool:
    """True if `value` is an id `new_id` can make (anything else names no task)."""
    return _TASK_ID.fullmatch(value) is not None


def check_cursor(value: str) -> str:
    """Return `value` if it can be a page cursor (a task id); ValidationError otherwise."""
    if not is_task_id(value):
        raise ValidationError("cursor must be a next_cursor from a previous page")
    return value


def id_time(task_id: str) -> float:
    """Return the time (seconds) encoded in an id made by `new_id`."""
    if len(task_id) != 26:
        raise ValueError(f"not a task id: {task_id!r}")
    value = 0
    for char in task_id[:10]:
        index = _ALPHABET.find(char.upper())
        if index < 0:
            raise ValueError(f"not a task id: {task_id!r}")
        value = (value << 5) | index
    return value / 1000
