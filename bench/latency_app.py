"""The app the latency benchmark's worker processes load: one task type that reports when its
handler started, and a probe that notes when the reserve that handed each task out began and
ended (bench only: it wraps the fetcher's broker; the engine itself records nothing per task)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from taskengine import App
from taskengine.registry import TaskContext
from taskengine.runtime import fetcher

app = App(builtins=False)
RESERVED: dict[str, tuple[float, float]] = {}  # task id -> (reserve began, reserve returned)
RESERVES = [0, 0]  # reserves by this process's fetcher so far, and how many came back empty


class _TimedReserve:
    """The fetcher's broker, with each reserve's start and end noted per task it returns."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        leases = await self._broker.reserve(*args, **kwargs)
        returned = time.perf_counter()
        RESERVES[0] += 1
        RESERVES[1] += not leases
        for lease in leases:
            RESERVED[lease.task_id] = (began, returned)
        return leases


_init = fetcher.Fetcher.__init__


def _timed_init(self: fetcher.Fetcher, broker: Any, *args: Any, **kwargs: Any) -> None:
    _init(self, _TimedReserve(broker), *args, **kwargs)


fetcher.Fetcher.__init__ = _timed_init  # type: ignore[method-assign]


@app.task("bench.mark")
async def mark(payload: Any, ctx: TaskContext) -> list[float]:
    """Return (handler started, reserve began, reserve returned), perf_counter seconds:
    CLOCK_MONOTONIC, shared by every process of the machine; then this process's id and its
    reserve counters."""
    started = time.perf_counter()
    began, returned = RESERVED.pop(ctx.task_id, (float("nan"), float("nan")))
    return [started, began, returned, os.getpid(), *RESERVES]


LOW_RUN = 0.1  # seconds a LOW task of the priority case keeps its worker (I/O)


@app.task("bench.low")
async def low(payload: Any) -> None:
    """The backlog of the priority case: each keeps a worker for LOW_RUN seconds."""
    await asyncio.sleep(LOW_RUN)
