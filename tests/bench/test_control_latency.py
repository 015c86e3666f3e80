"""The control-latency benchmark runs end to end (N=1) and prints every figure; no time is
asserted (the figures are the benchmark's, on a quiet machine)."""

from __future__ import annotations

import shutil

import pytest

from bench import control_latency


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_one_repetition_gives_every_figure_on_both_brokers() -> None:
    printed: list[str] = []
    rows = control_latency.run(runs=1, progress=printed.append)

    names = [f"{b}: {f} (ms)" for b in ("redis", "sqlite") for f in control_latency.FIGURES]
    assert [r["name"] for r in rows] == names
    for r in rows:
        assert len(r["values"]) == 1
        assert r["median"] == r["p90"] == r["max"] == r["values"][0] >= 0
    assert len(printed) == len(names)


def test_p90_is_the_nearest_rank() -> None:
    assert control_latency.p90([float(v) for v in range(1, 11)]) == 9.0
    assert control_latency.p90([5.0]) == 5.0
