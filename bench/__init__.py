"""Benchmarks: `make bench` (python -m bench)."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Coroutine
from typing import Any


def loop_runner(main: Coroutine[Any, Any, Any]) -> Any:
    """Run on uvloop when installed, as `taskengine worker` does."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def row(name: str, values: list[float]) -> dict[str, Any]:
    """One figure as the row-shaped suites save it: its runs, median, min and max."""
    return {
        "name": name,
        "values": values,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }
