"""Time-sortable unique ids: ULID layout, 48-bit milliseconds + 80 random bits in base32."""

from __future__ import annotations

import base64
import os

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, which sorts like the value
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
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
    # 80 random bits are exactly 16 base32 characters: no padding, no bit shuffling.
    return _time_prefix(ms) + base64.b32encode(os.urandom(10)).translate(_FROM_RFC4648).decode()


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
