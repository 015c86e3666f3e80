"""The per-second history behind the dashboard's charts, kept in a ring and saved to a file.

The file lets a restarted server show the last minutes instead of a blank page. It is written
whole (to a temporary name, then renamed) off the event loop, every few seconds.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path

import msgspec

HISTORY_POINTS = 300  # five minutes at one point per second


class Point(msgspec.Struct, kw_only=True):
    """What the engine did during one second."""

    t: float
    ok: int = 0
    failed: int = 0
    depth: dict[str, int] = msgspec.field(default_factory=dict)  # queued tasks per priority
    running: int = 0
    busy: dict[str, float] = msgspec.field(default_factory=dict)  # worker id -> busy fraction
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    loop_lag_seconds: float = 0.0


class History:
    """The last HISTORY_POINTS points, oldest first."""

    def __init__(self, size: int = HISTORY_POINTS) -> None:
        self.points: deque[Point] = deque(maxlen=size)

    def add(self, point: Point) -> None:
        """Append a point (older ones fall off the ring)."""
        self.points.append(point)

    def since(self, t: float) -> list[Point]:
        """The points newer than `t`."""
        return [p for p in self.points if p.t > t]

    def encode(self) -> bytes:
        """The ring as JSON: {"points": [...]}."""
        return msgspec.json.encode({"points": list(self.points)})

    def save(self, path: Path) -> None:
        """Write the ring to `path` atomically (blocking: call it off the event loop)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_bytes(msgspec.json.encode(list(self.points)))
        os.replace(partial, path)

    def load(self, path: Path, now: float) -> int:
        """Take the saved points still inside the window before `now`; return how many."""
        with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
            saved = msgspec.json.decode(path.read_bytes(), type=list[Point])
            oldest = now - (self.points.maxlen or HISTORY_POINTS)
            kept = [p for p in saved if oldest <= p.t < now]
            self.points.extend(kept)
            return len(kept)
        return 0
