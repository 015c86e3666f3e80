"""Time-sortable unique ids: ULID layout, 48-bit milliseconds + 80 random bits in base32."""

from __future__ import annotations

import os

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_MAX_MS = (1 << 48) - 1


def new_id(now: float) -> str:
    """Return a 26-character id whose lexical order follows `now` to the millisecond."""
    ms = int(now * 1000)
    if not 0 <= ms <= _MAX_MS:
        raise ValueError(f"time {now!r} is outside the id range")
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


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
