"""The one shape of every background loop: start, stop, run_once (tests drive run_once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("taskengine.runtime")


class PeriodicService:
    """Calls `run_once` every `interval` seconds until stopped; a failure is logged, not fatal."""

    def __init__(
        self,
        name: str,
        interval: float,
        run_once: Callable[[], Awaitable[Any]],
        *,
        max_backoff: int = 8,
        deadline: float | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.max_backoff = max_backoff  # a failing duty waits at most this many intervals
        self.deadline = deadline  # a round still running after this long is cut and failed
        self._run_once = run_once
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.failures = 0

    async def run_once(self) -> Any:
        """Do one round of the duty now."""
        return await self._run_once()

    async def start(self) -> None:
        """Start the loop (idempotent)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._loop(), name=f"taskengine:{self.name}")

    async def stop(self) -> None:
        """Stop the loop and wait for it (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self.deadline):
                    await self._run_once()
                self.failures = 0
            except Exception:
                self.failures += 1
                log.exception("%s failed (%d in a row)", self.name, self.failures)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.next_delay())

    def next_delay(self) -> float:
        """Seconds until the next round: the interval, doubled per failure in a row, capped."""
        return self.interval * min(1 << max(self.failures - 1, 0), self.max_backoff)
