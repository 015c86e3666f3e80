"""The broker's connections to PostgreSQL: the pool, migrations at start, wake-ups, errors.

Shared by the hot path (broker.py) and the admin half (admin.py). Connection trouble from
asyncpg (and a closed broker) becomes BrokerUnavailable; a deadlock between two batches that
touch the same rows in another order is retried (the statement was rolled back whole);
anything else is a bug and propagates.

Every call has a deadline (`config.timeout`, the `timeout` URL option): opening a connection,
waiting for a pooled one, each statement (asyncpg's command_timeout), and handing the
connection back. A statement that timed out is cancelled on the server and its connection is
closed rather than reused, so a half-open connection costs one call, not the pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import asyncpg

from taskengine.brokers.base import Capabilities
from taskengine.brokers.postgres import queries as q
from taskengine.brokers.postgres.codec import Row
from taskengine.brokers.postgres.config import parse_url
from taskengine.brokers.postgres.schema import DURABILITY, check_version, migrate
from taskengine.brokers.postgres.wakeup import WakeListener
from taskengine.errors import BrokerUnavailable

log = logging.getLogger("taskengine.brokers.postgres")

T = TypeVar("T")
# A queue table grows and shrinks faster than autoanalyze follows, so plans must not lean on
# its statistics. A generic plan cached while the table was small kept seq-scanning it for
# every id lookup (per-call time grew with the table); custom plans see its current size.
# With bitmap scans allowed, `reserve` sorted every due task instead of walking tasks_ready
# in order up to its limit (12 ms instead of 0.2 ms at 20,000 queued tasks). None of the
# broker's statements needs a bitmap scan; planning each execution costs ~0.1 ms.
# READ COMMITTED whatever the role's or database's default: `reserve` relies on SKIP LOCKED
# re-reading rows another reserver just committed; under REPEATABLE READ or SERIALIZABLE such
# a row fails the statement with a serialization error instead. Sessions get it as their
# default (single statements run in an implicit transaction) and `_transaction` names it.
ISOLATION = "read_committed"
SESSION_SETTINGS = {
    "plan_cache_mode": "force_custom_plan",
    "enable_bitmapscan": "off",
    "default_transaction_isolation": "read committed",
}
ATTEMPTS = 3  # tries of a statement or transaction that lost a deadlock
# Errors that mean "the server is not there (any more)", not "this statement is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,  # the pool or connection is closed or closing
    # A call that meets a connection the server has just killed (restart, failover) but whose
    # end asyncpg has not read yet; pooled connections are never shared, so nothing else does.
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
)
Work = Callable[[Any], Awaitable[T]]  # run with one pooled asyncpg connection


class PostgresConnection:
    """An asyncpg pool on one schema, its statements, and the LISTEN connection."""

    def __init__(
        self,
        url: str,
        *,
        max_depth: int | None = None,
        schema: str | None = None,
        pool_size: int | str | None = None,
        url_params: dict[str, str] | None = None,
    ) -> None:
        self.config = parse_url(
            url, max_depth=max_depth, schema=schema, pool_size=pool_size, url_params=url_params
        )
        self.max_depth = self.config.max_depth
        self.schema = self.config.schema
        self.sql = q.Sql(self.config.quoted_schema)
        self._pool: Any = None
        self._limited_for: float | None = None  # ADR 0038, as of the last reserve
        self._has_limits = False  # a limit was stored at the last reserve (or set here)
        self._wake: WakeListener | None = None
        self._starting = asyncio.Lock()
        self._capabilities = Capabilities(durable=True, shared=True, push_wakeup=True)

    @property
    def capabilities(self) -> Capabilities:
        """Shared, wakes waiters by NOTIFY; durable unless the server acknowledges commits
        before they are on disk (fsync or synchronous_commit off: read at start)."""
        return self._capabilities

    async def start(self) -> None:
        """Open the pool, create or migrate the schema (only check it with `migrate=false`),
        LISTEN for wake-ups. Idempotent.

        A few round trips: connect, one migration transaction (migrations run only on a new
        or older schema), open the pool, connect and LISTEN. Raises BrokerUnavailable if the
        server cannot be reached or refuses the connection, and ConfigurationError if the
        schema is newer than this build; nothing keeps running after a failure.
        """
        async with self._starting:
            if self._pool is not None:
                return
            wake = WakeListener(self._connect, self.config.channel)
            pool: Any = None
            try:
                async with self._available(starting=True):
                    # A migration may rightly outlast any per-call deadline (an index on a big
                    # table), and so may waiting for another process's: its own connection,
                    # with a deadline on connecting only.
                    conn = await self._connect(SESSION_SETTINGS, statements_bounded=False)
                    try:
                        applied = 0
                        if self.config.migrate:
                            applied = await migrate(conn, self.config.quoted_schema, self.schema)
                        else:
                            await check_version(conn, self.config.quoted_schema, self.schema)
                        durable = bool(await conn.fetchval(DURABILITY))
                    finally:
                        conn.terminate()
                    pool = await asyncpg.create_pool(
                        self.config.dsn,
                        min_size=1,
                        max_size=self.config.pool_size,
                        timeout=self.config.timeout,
                        command_timeout=self.config.timeout,
                        server_settings=self._settings(SESSION_SETTINGS),
                    )
                    await wake.start()
            except BaseException:
                await wake.stop()
                if pool is not None:
                    pool.terminate()
                raise
            if applied:
                log.info("postgres broker: schema %r migrated (%d steps)", self.schema, applied)
            if not durable:
                log.warning("postgres broker: fsync or synchronous_commit is off: not durable")
            self._capabilities = Capabilities(durable=durable, shared=True, push_wakeup=True)
            self._pool, self._wake = pool, wake

    async def close(self) -> None:
        """Stop listening and close every connection once the calls in flight are done.
        Idempotent; every write already answered is committed."""
        pool, wake = self._pool, self._wake
        self._pool = self._wake = None
        if wake is not None:
            await wake.stop()
        if pool is not None:
            await pool.close()

    async def drop_schema(self) -> None:
        """Drop the schema with everything in it (admin, tests). One round trip; run it only
        when nothing else uses the schema."""
        await self._execute(q.DROP_SCHEMA)

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a notification came since the last call (enqueue, a retry, requeue,
        replay, resume; from any process on this schema), or after `timeout` seconds."""
        if self._wake is None:
            raise BrokerUnavailable("the PostgreSQL broker is not started or already closed")
        await self._wake.wait(timeout)

    # -- for both halves --------------------------------------------------------------------

    @property
    def limited_for(self) -> float | None:
        """Seconds until an empty bucket seen by the last reserve gets a token (ADR 0038)."""
        return self._limited_for

    async def _fetch(self, template: str, *args: Any) -> list[Row]:
        """Run one statement (one round trip, atomic) and return its rows."""
        return cast(list[Row], await self._run(lambda c: c.fetch(self.sql(template), *args)))

    async def _fetchval(self, template: str, *args: Any) -> Any:
        """Run one statement (one round trip, atomic) and return its first value."""
        return await self._run(lambda conn: conn.fetchval(self.sql(template), *args))

    async def _execute(self, template: str, *args: Any) -> None:
        """Run one statement (one round trip, atomic)."""
        await self._run(lambda conn: conn.execute(self.sql(template), *args))

    async def _transaction(self, work: Work[T]) -> T:
        """Run `work` in one READ COMMITTED transaction (BEGIN and COMMIT are a round trip
        each)."""

        async def transaction(conn: Any) -> T:
            async with conn.transaction(isolation=ISOLATION):
                return await work(conn)

        return await self._run(transaction)

    def _live(self) -> Any:
        """The pool; BrokerUnavailable if the broker is not started or already closed."""
        if self._pool is None:
            raise BrokerUnavailable("the PostgreSQL broker is not started or already closed")
        return self._pool

    async def _run(self, work: Work[T]) -> T:
        """Run `work` on a pooled connection. The deadline bounds the wait for a connection,
        each statement, and the hand-back (a connection whose statement timed out is closed
        there, once the server has the cancel or the deadline passed)."""
        pool = self._live()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._available(), pool.acquire(timeout=self.config.timeout) as conn:
                    return await work(conn)
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    async def _connect(
        self, settings: dict[str, str] | None = None, *, statements_bounded: bool = True
    ) -> Any:
        """Open one connection outside the pool (for LISTEN; at start, for migrations), with
        the deadline on connecting and (unless told otherwise) on each statement."""
        return await asyncpg.connect(
            self.config.dsn,
            timeout=self.config.timeout,
            command_timeout=self.config.timeout if statements_bounded else None,
            server_settings=self._settings(settings or {}),
        )

    def _settings(self, settings: dict[str, str]) -> dict[str, str]:
        """Session settings plus the application name (if the URL gives none)."""
        name = self.config.application_name
        return settings if name is None else {**settings, "application_name": name}

    @asynccontextmanager
    async def _available(self, *, starting: bool = False) -> AsyncIterator[None]:
        """Turn connection trouble (at start: any asyncpg error) into BrokerUnavailable."""
        caught = (*UNAVAILABLE, asyncpg.PostgresError) if starting else UNAVAILABLE
        try:
            yield
        except caught as exc:
            raise BrokerUnavailable(
                f"PostgreSQL at {self.config.where} is unavailable: {exc}"
            ) from exc
