"""The app the control-latency benchmark's worker process loads: one short task type."""

from __future__ import annotations

import asyncio
from typing import Any

from taskengine import App

NAP = "bench.nap"
NAP_SECONDS = 0.02  # short: a drained worker's running tasks end at once

app = App(builtins=False)


@app.task(NAP)
async def nap(payload: Any) -> None:
    """Sleep NAP_SECONDS: the worker is busy, the loop is free."""
    await asyncio.sleep(NAP_SECONDS)
