"""What a single submit costs the latency benchmark's producer: `python -m
bench.producer_profile URL [COUNT]` submits COUNT `bench.mark` tasks one `app.submit` at a time
(after 200 warm-up submits, no workers) under cProfile, prints the 18 functions with the most
time of their own, then submits COUNT more without the profiler; both with their p50 and p99
(perf_counter). `{uid}` in URL becomes a fresh name (a namespace of its own)."""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
import uuid
from typing import Any

from bench import loop_runner
from taskengine import App

WARMUP = 200


async def _timed(app: App, count: int) -> list[float]:
    """Submit `count` tasks one at a time; each call's seconds, sorted."""
    took: list[float] = []
    for _ in range(count):
        began = time.perf_counter()
        await app.submit("bench.mark", None)
        took.append(time.perf_counter() - began)
    return sorted(took)


def _line(label: str, took: list[float]) -> str:
    p50, p99 = took[len(took) // 2], took[int(len(took) * 0.99)]
    return f"submit p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms ({label}, {len(took)} calls)"


async def profile(url: str, count: int) -> None:
    """Profile `count` single submits to `url`, then time `count` more unprofiled."""
    app = App(url, builtins=False)

    @app.task("bench.mark")
    async def mark(payload: Any) -> None:  # only for validation: no worker runs here
        return None

    await app.start()
    try:
        await _timed(app, WARMUP)
        profiler = cProfile.Profile()
        profiler.enable()
        profiled = await _timed(app, count)
        profiler.disable()
        print(_line("profiled", profiled))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
        print(_line("unprofiled", await _timed(app, count)))
    finally:
        await app.close()


def main() -> None:
    """Run the profile the command line asks for."""
    url = sys.argv[1].replace("{uid}", uuid.uuid4().hex[:8])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    loop_runner(profile(url, count))


if __name__ == "__main__":
    main()
