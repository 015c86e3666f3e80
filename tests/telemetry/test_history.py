"""Metric history beyond five minutes: the last hour per second, the last day per minute."""

from __future__ import annotations

import json
from pathlib import Path

from taskengine.telemetry.history import BUSY_KEPT, History, Point

T0 = 1_700_000_040.0  # a whole minute


def _second(t: float, ok: int = 1, depth: int = 0) -> Point:
    return Point(t=t, ok=ok, failed=0, depth={"NORMAL": depth}, busy={"i/w1": 0.5}, rss_bytes=100)


def test_the_last_hour_is_kept_per_second_and_the_busy_fractions_for_five_minutes() -> None:
    history = History()
    for s in range(4000):
        history.add(_second(T0 + s))
    hour = history.window(3600)
    assert len(hour.points) == 3600 and hour.step == 1
    assert hour.points[0].t == T0 + 400 and hour.points[-1].t == T0 + 3999
    assert [bool(p.busy) for p in hour.points].count(True) == BUSY_KEPT == 300
    assert len(history.window(300).points) == 300


def test_the_last_day_is_down_sampled_to_minutes() -> None:
    history = History()
    for s in range(5 * 60):
        history.add(_second(T0 + s, ok=2, depth=s % 60))
    day = history.window(86400)
    assert day.step == 60
    # a minute is rolled up once late reports can no longer change it (15 s after it ended)
    assert [p.t for p in day.points] == [T0, T0 + 60, T0 + 120, T0 + 180]
    first = day.points[0]
    assert first.ok == 120  # the minute's sum
    assert first.depth == {"NORMAL": 59}  # the minute's peak
    assert first.busy == {}


def test_both_rings_survive_a_restart(tmp_path: Path) -> None:
    history = History()
    for s in range(200):
        history.add(_second(T0 + s))
    path = tmp_path / "h.json"
    history.save(path)
    restored = History()
    assert restored.load(path, now=T0 + 200) == 200
    assert [p.t for p in restored.window(86400).points] == [T0, T0 + 60, T0 + 120]
    # a file of the five-minute history (a list of points) still loads
    path.write_text(json.dumps([{"t": T0 + 199, "ok": 3}]))
    assert History().load(path, now=T0 + 200) == 1
