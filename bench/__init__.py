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


async def drop_storage(broker: Any) -> None:
    """Drop what a benchmark stored on a shared server: the broker's schema, namespace or
    stream, whichever it has (the memory and SQLite brokers have none)."""
    drop = (
        getattr(broker, "drop_schema", None)
        or getattr(broker, "drop_namespace", None)
        or getattr(broker, "drop_stream", None)
    )
    if drop is not None:
        await drop()
