"""Waiting for a wake-up event with a timeout, without losing a cancellation; waiting for
a future as long as something progresses."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set (True) or `timeout` seconds passed (False).

    Not `asyncio.wait_for`: on Python 3.11 it returns the result and swallows a cancellation
    that lands in the same loop iteration as the event, so a stopping fetcher kept waiting.
    """
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def wait_progressing(
    future: asyncio.Future[None], window: float, position: Callable[[], int]
) -> bool:
    """Wait for `future` as long as `position()` advances in every `window` seconds: True
    once done, False when a whole window passed without it advancing (a stall bound, not a
    deadline). The future is left as it is; a cancellation reaches the caller."""
    last = position()
    while True:
        try:
            async with asyncio.timeout(window):
                await asyncio.shield(future)
            return True
        except TimeoutError:
            now = position()
            if now == last:
                return False
            last = now
