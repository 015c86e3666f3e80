"""Wake-ups over LISTEN/NOTIFY: the tasks trigger NOTIFYs the schema's channel when a statement
leaves tasks queued (and resume does too); one dedicated connection per broker LISTENs and sets
an event that `wait_for_work` waits on, so no one polls. A lost connection is reopened."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from taskengine.brokers.waiting import wait_event

log = logging.getLogger("taskengine.brokers.postgres")

RECONNECT_DELAY = 0.5  # seconds between attempts to listen again after the connection dropped
Connect = Callable[[], Awaitable[Any]]  # opens one asyncpg connection


class WakeListener:
    """LISTENs on one channel on its own connection and remembers that a notification came."""

    def __init__(self, connect: Connect, channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self._event = asyncio.Event()
        self._conn: Any = None
        self._reconnect: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def server_pid(self) -> int | None:
        """The backend process id of the listening connection (None while reconnecting)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    async def start(self) -> None:
        """Open the connection and LISTEN (two round trips); raise what opening raised."""
        self._closing = False
        self._conn = await self._listen()

    async def stop(self) -> None:
        """Stop listening and close the connection. Idempotent."""
        self._closing = True
        task, conn = self._reconnect, self._conn
        self._reconnect = self._conn = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if conn is not None:
            with contextlib.suppress(Exception):  # it may be broken already: nothing to save
                await conn.close(timeout=2.0)

    async def wait(self, timeout: float) -> None:
        """Return at once if a notification came since the last call, else at the next one or
        after `timeout` seconds; either way the remembered notification is used up."""
        await wait_event(self._event, timeout)
        self._event.clear()

    async def _listen(self) -> Any:
        conn = await self._connect()
        try:
            await conn.add_listener(self._channel, self._notified)
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._lost)
        return conn

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._event.set()

    def _lost(self, conn: Any) -> None:
        if self._closing or conn is not self._conn:
            return
        # Notifications sent while disconnected are lost: wake the waiters, who will look.
        log.warning("postgres wake-up connection lost, listening again")
        self._conn = None
        self._event.set()
        self._reconnect = asyncio.get_running_loop().create_task(
            self._listen_again(), name="postgres-wake-listener"
        )

    async def _listen_again(self) -> None:
        while not self._closing:
            await asyncio.sleep(RECONNECT_DELAY)
            try:
                conn = await self._listen()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("postgres wake-up connection still down: %s", exc)
                continue
            if self._closing:
                conn.terminate()
                return
            self._conn = conn
            self._reconnect = None
            self._event.set()
            return
