"""The broker's connection to Redis: the client, the scripts, start checks and error mapping.

Shared by the hot path (broker.py) and the admin half (admin.py). Connection and timeout
errors from redis-py become BrokerUnavailable; anything else is a bug and propagates.

Every command has a deadline (the `timeout` URL option, connecting and reading), and no
command is ever re-sent by redis-py: a script whose reply did not come in time may have run,
and most scripts are not idempotent (a second `reserve` claims more tasks). A command that
timed out closes its connection, so a late reply is never read as another command's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskengine.brokers.base import Capabilities, check_limit
from taskengine.brokers.deadline import TIMEOUT_PARAM, parse_timeout
from taskengine.brokers.redis.keys import Keys
from taskengine.brokers.redis.scripts import Arg, ScriptRunner
from taskengine.brokers.redis.server import CONFIG_NAMES, ServerConfig, check_config
from taskengine.brokers.redis.wakeup import WakeListener
from taskengine.errors import BrokerUnavailable, ConfigurationError

log = logging.getLogger("taskengine.brokers.redis")

# URL query parameters the broker reads; the rest go to redis-py.
OWN_PARAMS = frozenset({"namespace", "max_depth", TIMEOUT_PARAM})
NO_CLUSTER = (
    "Redis Cluster is not supported: the broker runs on one Redis server (a primary, with "
    "replicas or Sentinel for failover). Its keys share one hash tag, so a later version could."
)


def client_url(url: str) -> str:
    """The URL without the broker's own query parameters (the rest go to redis-py)."""
    parts = urlsplit(url)
    rest = [(k, v) for k, v in parse_qsl(parts.query) if k not in OWN_PARAMS]
    return urlunsplit(parts._replace(query=urlencode(rest)))


class RedisConnection:
    """A redis.asyncio client (connection pool), the namespace's scripts and wake-ups."""

    def __init__(
        self, url: str, *, max_depth: int, namespace: str, url_params: dict[str, str]
    ) -> None:
        check_limit(max_depth, "max_depth")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigurationError(f"not a Redis URL: {url!r}")
        in_url = dict(parse_qsl(parts.query))
        if "cluster" in in_url or "cluster" in url_params:
            raise ConfigurationError(NO_CLUSTER)
        params = dict(url_params)
        self.timeout = parse_timeout(params.pop(TIMEOUT_PARAM, None), in_url.get(TIMEOUT_PARAM))
        unknown = {k for k, v in params.items() if in_url.get(k) != str(v)}
        if unknown:
            raise ConfigurationError(
                f"unknown Redis broker options {sorted(unknown)}: client options go in the URL"
            )
        self.url = url
        self.max_depth = max_depth
        self.keys = Keys(namespace)
        self._client: Redis | None = None
        self._scripts: ScriptRunner | None = None
        self._limited_for: float | None = None  # ADR 0038, as of the last reserve
        self._wake: WakeListener | None = None
        self._starting = asyncio.Lock()
        self._capabilities = Capabilities(durable=False, shared=True, push_wakeup=True)

    @property
    def capabilities(self) -> Capabilities:
        """Shared, wakes waiters by pub/sub; durable as the server's persistence (read at
        start: AOF or RDB snapshots configured) -- False until started."""
        return self._capabilities

    async def start(self) -> None:
        """Connect, check the server's configuration, load the scripts, subscribe to wake-ups.

        Five round trips (PING, INFO cluster, CONFIG GET, SCRIPT LOAD, SUBSCRIBE). Idempotent.
        Raises BrokerUnavailable if the server cannot be reached and ConfigurationError if it
        is a Redis Cluster node or its eviction policy may drop tasks; nothing keeps running
        after a failure.
        """
        async with self._starting:
            if self._client is not None:
                return
            # The URL's own socket_timeout / socket_connect_timeout, if any, win over these.
            client = Redis.from_url(
                client_url(self.url),
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),  # never re-send: see the module's docstring
            )
            wake = WakeListener(client, self.keys.wake)
            try:
                async with _available():
                    await client.ping()
                    await _refuse_cluster(client)
                    server = await _inspect(client)
                    scripts = ScriptRunner(client, self.keys)
                    await scripts.preload()
                    await wake.start()
            except BaseException:
                await wake.stop()
                await client.aclose()
                raise
            self._capabilities = Capabilities(durable=server.durable, shared=True, push_wakeup=True)
            self._client, self._scripts, self._wake = client, scripts, wake

    async def close(self) -> None:
        """Stop the wake-up subscriber and close every connection. Idempotent; every write
        already answered is on the server."""
        client, wake = self._client, self._wake
        self._client = self._scripts = self._wake = None
        if wake is not None:
            await wake.stop()
        if client is not None:
            await client.aclose()

    async def drop_namespace(self) -> int:
        """Delete every key of this namespace (admin, tests); return how many were deleted.

        SCAN in pages and UNLINK each page: one round trip per page; not atomic, so run it
        only when nothing else uses the namespace.
        """
        client = self._redis()
        deleted = 0
        async with _available():
            async for batch in _scan(client, self.keys.pattern):
                deleted += await client.unlink(*batch)
        return deleted

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a wake-up was published since the last call (enqueue, a due retry,
        requeue, replay, resume; from any process), or after `timeout` seconds."""
        if self._wake is None:
            raise BrokerUnavailable("the Redis broker is not started or already closed")
        await self._wake.wait(timeout)

    # -- for both halves --------------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            raise BrokerUnavailable("the Redis broker is not started or already closed")
        return self._client

    @property
    def limited_for(self) -> float | None:
        """Seconds until an empty bucket seen by the last reserve gets a token (ADR 0038)."""
        return self._limited_for

    async def _run(self, name: str, *args: Arg) -> Any:
        """Run one script: one round trip, atomic on the server."""
        if self._scripts is None:
            raise BrokerUnavailable("the Redis broker is not started or already closed")
        async with _available():
            return await self._scripts.run(name, *args)

    async def _transaction(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run commands in one MULTI/EXEC: one round trip, atomic."""
        pipe = self._redis().pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        async with _available():
            return await pipe.execute()


@asynccontextmanager
async def _available() -> AsyncIterator[None]:
    """Turn connection trouble into BrokerUnavailable."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"Redis is unavailable: {exc}") from exc


async def _refuse_cluster(client: Redis) -> None:
    """Refuse a server in cluster mode (one round trip): a plain client would start, then
    fail on every key another node serves."""
    try:
        info = await client.info("cluster")
    except ResponseError as exc:  # INFO renamed or refused (managed Redis)
        log.warning("redis INFO refused (%s): cluster mode not checked", exc)
        return
    if str(info.get("cluster_enabled", 0)) == "1":
        raise ConfigurationError(NO_CLUSTER)


async def _inspect(client: Redis) -> ServerConfig:
    """Read the configuration (one round trip), check it and log the durability window."""
    pipe = client.pipeline(transaction=False)
    for name in CONFIG_NAMES:
        pipe.config_get(name)
    try:
        answers = await pipe.execute()
    except ResponseError as exc:  # CONFIG renamed or refused (managed Redis)
        log.warning("redis CONFIG GET refused (%s): eviction and durability not checked", exc)
        return ServerConfig(False, "unknown: CONFIG GET is not allowed")
    config = {
        _text(k): _text(v) for answer in answers for k, v in cast(dict[Any, Any], answer).items()
    }
    server = check_config(config)
    log.info(
        "redis broker: durability %s; maxmemory-policy %s",
        server.window,
        config.get("maxmemory-policy", "?"),
    )
    return server


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _scan(client: Redis, pattern: str) -> AsyncIterator[list[bytes | str]]:
    cursor = 0
    while True:
        cursor, keys = await client.scan(cursor, match=pattern, count=500)
        if keys:
            yield list(keys)
        if cursor == 0:
            return
