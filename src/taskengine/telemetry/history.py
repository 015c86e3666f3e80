"""The history behind the dashboard's charts: the last hour per second, the last day per minute.

Seconds are kept in a ring of an hour; each worker's busy fraction only for the last five
minutes (the heatmap's), so a large cluster's hour stays small. A minute is rolled up into the
day's ring once late reports can no longer change it (`ROLL_AFTER` past its end): ok and failed
summed, depth and running at their peak, RSS and loop lag at their peak, CPU averaged.

The file lets a restarted server show the last hour instead of a blank page. It is written
whole (to a temporary name, then renamed) off the event loop, every few seconds.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from pathlib import Path

import msgspec

HISTORY_POINTS = 3600  # an hour at one point per second
BUSY_KEPT = 300  # the newest seconds that keep each worker's busy fraction (five minutes)
DAY_MINUTES = 1440  # a day at one point per minute
MINUTE = 60.0
ROLL_AFTER = 15.0  # seconds past a minute's end before it is rolled up (reports come late)
RANGES = {"5m": 300, "1h": 3600, "24h": 86400}  # what the API and the chart offer


class Point(msgspec.Struct, kw_only=True):
    """What the engine did during one second (or, in the day's ring, one minute)."""

    t: float
    ok: int = 0
    failed: int = 0
    depth: dict[str, int] = msgspec.field(default_factory=dict)  # queued tasks per priority
    running: int = 0
    busy: dict[str, float] = msgspec.field(default_factory=dict)  # worker id -> busy fraction
    rss_bytes: int = 0
    cpu_percent: float = 0.0
    loop_lag_seconds: float = 0.0


class Window(msgspec.Struct, frozen=True):
    """Points of one range, oldest first, `step` seconds apart."""

    points: list[Point]
    step: int = 1


class _Saved(msgspec.Struct):
    seconds: list[Point]
    minutes: list[Point] = msgspec.field(default_factory=list)


class History:
    """The last `size` seconds and the last DAY_MINUTES minutes, oldest first."""

    def __init__(self, size: int = HISTORY_POINTS) -> None:
        self.points: deque[Point] = deque(maxlen=size)
        self.minutes: deque[Point] = deque(maxlen=DAY_MINUTES)
        self._next_minute: float | None = None  # start of the next minute to roll up

    def add(self, point: Point) -> None:
        """Append a point (older ones fall off the ring; old ones lose their busy fractions)."""
        self.points.append(point)
        if len(self.points) > BUSY_KEPT:
            self.points[-BUSY_KEPT - 1].busy = {}
        self._roll(point.t)

    def since(self, t: float) -> list[Point]:
        """The points newer than `t`."""
        return [p for p in self.points if p.t > t]

    def window(self, seconds: int) -> Window:
        """The last `seconds`: per second up to the ring's hour, per minute beyond."""
        if seconds <= (self.points.maxlen or HISTORY_POINTS):
            newest = self.points[-1].t if self.points else 0.0
            return Window([p for p in self.points if p.t > newest - seconds])
        newest = self.minutes[-1].t if self.minutes else 0.0
        return Window([p for p in self.minutes if p.t > newest - seconds], step=int(MINUTE))

    def encode(self, seconds: int = RANGES["5m"]) -> bytes:
        """The last `seconds` as JSON: {"points": [...], "step": 1 or 60}."""
        return msgspec.json.encode(self.window(seconds))

    def save(self, path: Path) -> None:
        """Write both rings to `path` atomically (blocking: call it off the event loop)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_bytes(msgspec.json.encode(_Saved(list(self.points), list(self.minutes))))
        os.replace(partial, path)

    def load(self, path: Path, now: float) -> int:
        """Take the saved points still inside each ring's span before `now`; return how many
        seconds (a file of the five-minute history, a list of points, loads too)."""
        with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
            raw = path.read_bytes()
            saved = (
                _Saved(msgspec.json.decode(raw, type=list[Point]))
                if raw.lstrip().startswith(b"[")
                else msgspec.json.decode(raw, type=_Saved)
            )
            oldest = now - (self.points.maxlen or HISTORY_POINTS)
            kept = [p for p in saved.seconds if oldest <= p.t < now]
            self.minutes.extend(p for p in saved.minutes if now - DAY_MINUTES * MINUTE <= p.t)
            if self.minutes:
                self._next_minute = self.minutes[-1].t + MINUTE
            for point in kept:
                self.add(point)
            return len(kept)
        return 0

    def _roll(self, newest: float) -> None:
        """Roll up every minute that ended ROLL_AFTER seconds before `newest`."""
        if self._next_minute is None:
            self._next_minute = (self.points[0].t // MINUTE) * MINUTE
        while newest >= self._next_minute + MINUTE + ROLL_AFTER:
            start = self._next_minute
            inside = [p for p in self.points if start <= p.t < start + MINUTE]
            if inside:
                self.minutes.append(_minute(start, inside))
            self._next_minute = start + MINUTE
            if not inside:  # a gap (the server was down): jump to the next sampled minute
                later = [p.t for p in self.points if p.t >= self._next_minute]
                if later:
                    self._next_minute = max(self._next_minute, (min(later) // MINUTE) * MINUTE)


def _minute(start: float, points: list[Point]) -> Point:
    depth: dict[str, int] = {}
    for point in points:
        for name, count in point.depth.items():
            depth[name] = max(depth.get(name, 0), count)
    return Point(
        t=start,
        ok=sum(p.ok for p in points),
        failed=sum(p.failed for p in points),
        depth=depth,
        running=max(p.running for p in points),
        rss_bytes=max(p.rss_bytes for p in points),
        cpu_percent=round(sum(p.cpu_percent for p in points) / len(points), 2),
        loop_lag_seconds=max(p.loop_lag_seconds for p in points),
    )
