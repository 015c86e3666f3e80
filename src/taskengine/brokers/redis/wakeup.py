"""Wake-ups over Redis pub/sub: scripts PUBLISH on the namespace's channel when work may be
ready; one subscriber per broker sets an event that `wait_for_work` waits on (no polling)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskengine.brokers.waiting import wait_event

log = logging.getLogger("taskengine.brokers.redis")

RECONNECT_DELAY = 0.5  # seconds between attempts to resubscribe after the connection dropped


class WakeListener:
    """Subscribes to one channel on a dedicated connection and remembers that a message came."""

    def __init__(self, client: Redis, channel: str) -> None:
        self._client = client
        self._channel = channel
        self._event = asyncio.Event()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe (one round trip) and start reading messages in the background."""
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel)
        self._task = asyncio.create_task(self._read(self._pubsub), name="redis-wake-listener")

    async def stop(self) -> None:
        """Stop reading and give the connection back. Idempotent."""
        task, pubsub = self._task, self._pubsub
        self._task = self._pubsub = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if pubsub is not None:
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py: untyped

    async def wait(self, timeout: float) -> None:
        """Return at once if a message came since the last call, else at the next one or
        after `timeout` seconds; either way the remembered message is used up."""
        await wait_event(self._event, timeout)
        self._event.clear()

    async def _read(self, pubsub: PubSub) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except Exception as exc:  # keep listening whatever went wrong; CancelledError stops
                # Messages sent while disconnected are lost: wake the waiters, who will look.
                log.warning("redis wake-up subscription lost, resubscribing: %s", exc)
                self._event.set()
                await asyncio.sleep(RECONNECT_DELAY)
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                    await pubsub.subscribe(self._channel)
                continue
            if message is not None:
                self._event.set()
