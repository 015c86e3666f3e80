"""Waiting for a wake-up event with a timeout, without losing a cancellation."""

from __future__ import annotations

import asyncio


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
