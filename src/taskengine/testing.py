"""Helpers for users' own tests: run tasks through a real worker pool on the memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from taskengine.app import App
from taskengine.clock import SYSTEM_CLOCK, Clock
from taskengine.runtime.engine import Engine
from taskengine.settings import Settings


def memory_app(*, clock: Clock = SYSTEM_CLOCK, builtins: bool = False, **settings: Any) -> App:
    """An App on the in-memory broker (nothing persisted, nothing to clean up)."""
    return App(
        settings=Settings(broker_url="memory://", **settings), clock=clock, builtins=builtins
    )


@asynccontextmanager
async def running_worker(app: App, **overrides: Any) -> AsyncIterator[Engine]:
    """Start the app's worker pool for the duration of the block, then stop it gracefully."""
    await app.start()
    worker = app.engine(**overrides)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()


async def drain(app: App, timeout: float = 30.0, **overrides: Any) -> None:
    """Run a worker pool until no task is due, then stop it."""
    async with running_worker(app, **overrides) as worker:
        await worker.run_until_idle(timeout)
