"""The app the scale-out benchmark's worker processes load: one no-op task type."""

from __future__ import annotations

from typing import Any

from taskengine import App

app = App(builtins=False)


@app.task("bench.noop")
async def noop(payload: Any) -> None:
    """Do nothing: the figure is the engine's own cost per task."""
    return None
