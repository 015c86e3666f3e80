"""The SQLite broker's connection: the writer and reader threads, start and close, wake-ups.

Writes go to one writer thread that group-commits everything pending in one `BEGIN IMMEDIATE`
transaction (see writer.py); reads go to a read connection on its own thread (WAL lets it read
beside the writer). The event loop never touches SQLite. "One round trip" in the broker's
docstrings means one hop to the writer or reader thread; the writer may share that hop's
commit with other calls.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    Capabilities,
    check_limit,
)
from taskengine.brokers.sqlite import writes
from taskengine.brokers.sqlite.doorbell import Doorbell
from taskengine.brokers.sqlite.reads import Reader
from taskengine.brokers.sqlite.schema import check_synchronous, connect, create_schema
from taskengine.brokers.sqlite.store import StoreGuard
from taskengine.brokers.sqlite.writer import Writer
from taskengine.brokers.waiting import wait_event
from taskengine.errors import BrokerUnavailable, ConfigurationError

POLL_INTERVAL = 0.03  # seconds between checks for commits by other processes (doorbell missed)
_CAPABILITIES = Capabilities(durable=True, shared=True, push_wakeup=True)


class SqliteConnection:
    """The store's two connections, each on its own thread, and the wake-up of waiters."""

    def __init__(
        self,
        path: str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
    ) -> None:
        check_limit(max_depth, "max_depth")
        try:
            busy_timeout_ms = int(busy_timeout_ms)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"busy_timeout_ms must be an integer: {busy_timeout_ms!r}"
            ) from None
        if busy_timeout_ms < 0:
            raise ConfigurationError(f"busy_timeout_ms must be >= 0: {busy_timeout_ms}")
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ConfigurationError(f"the SQLite broker needs a file path, got {path!r}")
        self.path = path
        self.max_depth = max_depth
        self.synchronous = check_synchronous(synchronous)
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._starting = asyncio.Lock()
        self._work = asyncio.Event()
        self._doorbell = Doorbell(path)  # wakes waiters in other processes (doorbell.py)
        self._seen_version: int | None = None  # data_version as of the last reserve or wake-up
        self._limited_for: float | None = None  # ADR 0038, as of the last reserve
        self._has_limits = False  # the last reserve saw a stored limit: settles wake waiters

    @property
    def capabilities(self) -> Capabilities:
        """Durable, shared across processes; other processes' commits ring a doorbell."""
        return _CAPABILITIES

    @property
    def limited_for(self) -> float | None:
        """Seconds until an empty bucket seen by the last reserve gets a token (ADR 0038)."""
        return self._limited_for

    @property
    def commit_count(self) -> int:
        """How many transactions the writer committed since start (one per group)."""
        return 0 if self._writer is None else self._writer.commits

    async def start(self) -> None:
        """Open both connections (WAL) and create the schema if missing. Idempotent.

        Three round trips (open, schema, recording the files' identity for the store guard)
        plus opening the reader; atomic: the schema is created in one transaction. On failure
        nothing keeps running and the error is raised.
        """
        async with self._starting:
            if self._writer is not None:
                return
            opener = functools.partial(
                connect,
                self.path,
                synchronous=self.synchronous,
                busy_timeout_ms=self.busy_timeout_ms,
            )
            guard = StoreGuard(self.path)
            writer, reader = Writer(opener, guard), Reader(opener, guard)
            try:
                await writer.start()
                try:
                    await writer.submit(create_schema)
                    await reader.start()
                    await writer.submit(lambda _: guard.capture(), in_transaction=False)
                except BaseException:
                    await writer.stop()
                    raise
            except sqlite3.Error as exc:
                raise BrokerUnavailable(f"cannot open SQLite store {self.path!r}: {exc}") from exc
            self._writer, self._reader = writer, reader

    async def close(self) -> None:
        """Commit every write already submitted, then close both connections. Idempotent."""
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        self._doorbell.close()
        if writer is not None:
            await writer.stop()
        if reader is not None:
            await reader.stop()

    async def wait_for_work(self, timeout: float) -> None:
        """Return when this process queued work, when another process rang the doorbell, when
        another connection committed (checked via data_version after each POLL_INTERVAL
        without a ring, should a ring be missed), or after `timeout`."""
        writer = self._write()
        self._doorbell.listen(self._work.set)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0.0)
        if self._seen_version is None:
            self._seen_version = await writer.submit(writes.data_version, in_transaction=False)
        while True:
            if self._work.is_set():
                self._work.clear()
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            # The ring first: a data_version check queues behind the writer's group, and
            # commits by the other processes change it all the time under load.
            if await wait_event(self._work, min(POLL_INTERVAL, remaining)):
                continue
            version = await writer.submit(writes.data_version, in_transaction=False)
            if version != self._seen_version:
                self._seen_version = version
                return

    def _woken(self) -> None:
        """Work became ready: wake this process's waiters and ring the other processes'."""
        self._work.set()
        self._doorbell.ring()

    # -- internals --------------------------------------------------------------------------

    def _write(self) -> Writer:
        if self._writer is None:
            raise BrokerUnavailable("the SQLite broker is not started or already closed")
        return self._writer

    def _read(self) -> Reader:
        if self._reader is None:
            raise BrokerUnavailable("the SQLite broker is not started or already closed")
        return self._reader
