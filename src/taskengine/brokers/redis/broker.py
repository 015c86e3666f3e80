"""The Redis broker: shared by any number of processes and hosts, one Lua script per operation.

Each hot-path method is one round trip (EVALSHA) that is atomic on the server, whatever the
batch size; see lua/*.lua for what each script reads and writes and keys.py for the key layout.
Every "now" is passed to the scripts: the server's clock (`TIME`, read now and then and carried
forward; brokers.server_clock) unless `server_clock=false`, then the caller's; with it, reserve
and enqueue read `TIME` inside the script instead (readiness by the server's own clock). Lease
tokens are made here (secrets).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    EnqueueResult,
    check_lease_for,
    check_limit,
)
from taskengine.brokers.redis.admin import RedisAdmin
from taskengine.brokers.redis.codec import (
    decode_claim,
    enqueue_batch,
    settle_batch,
    unique_batch,
)
from taskengine.brokers.server_clock import flag
from taskengine.errors import QueueFull, UnknownParent
from taskengine.model import Lease, LeaseStatus, Outcome, ProgressReport, ResultStatus, Task
from taskengine.model.records import EXHAUSTED, LEASE_EXPIRED, as_received
from taskengine.model.serializer import pack
from taskengine.model.unique import UniqueLock

# The most newly due tasks one reserve moves to a queue's ready set (or `limit`, if larger):
# moving 50,000 at once took 1.5 s with the whole server blocked.
PROMOTE_STEP = 256


class RedisBroker(RedisAdmin):
    """A broker on a Redis 6.2+ server (or a managed one): `redis://host:6379/0?namespace=x`.

    Every key of a namespace shares the hash tag `{te:<namespace>}`, so namespaces isolate
    engines on one server. Redis Cluster is not supported (a cluster URL or a cluster-mode
    server is refused); the shared hash tag would let a later version run there.
    Query parameters of the URL other than `namespace`, `max_depth`, `timeout` (the deadline
    of each call, seconds) and `server_clock` go to redis-py (they also arrive here as keywords
    from `open_broker`, and are accepted only if they match the URL). The server must not
    evict keys (`maxmemory-policy` noeviction or volatile-*); its persistence decides
    `capabilities.durable` (read at start, logged). `server_clock` (default true): lease
    expiry, readiness and the times the broker records follow the server's clock, so hosts
    whose clocks disagree decide alike (ADR 0006); false: the caller's `now` (a fake clock).
    """

    def __init__(
        self,
        url: str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        namespace: str = "default",
        server_clock: bool | str = True,
        **url_params: str,
    ) -> None:
        super().__init__(
            _without_server_clock(url),
            max_depth=max_depth,
            namespace=namespace,
            url_params=url_params,
            server_clock=flag("server_clock", server_clock),
        )

    async def enqueue(
        self,
        tasks: Sequence[Task],
        now: float,
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        """Store tasks as queued, one result per task in input order (unique locks, one more
        packed argument: ADR 0038).

        One round trip (enqueue.lua, the batch as one packed argument); atomic: on QueueFull
        nothing is stored. Duplicates by id, then idempotency key, stored or earlier in the
        batch, answer the first task's id with created=False. Publishes a wake-up if anything
        was stored.
        """
        if not tasks:
            return []
        now = await self._now(now)
        batch = enqueue_batch([as_received(task, now) for task in tasks])
        locks = unique_batch(unique, now) if unique else ""
        clock = "0" if self._clock is None else "1"  # the script reads TIME (enqueue.lua)
        status, *rest = await self._run("enqueue", now, self.max_depth, batch, locks, clock)
        if status == b"full":
            depth, offered = rest
            raise QueueFull(int(depth), self.max_depth, int(offered))
        if status == b"unknown":
            task_id, *missing = rest
            raise UnknownParent(task_id.decode(), [m.decode() for m in missing])
        results = [EnqueueResult(task.id, True) for task in tasks]
        for index, existing in zip(rest[::2], rest[1::2], strict=True):
            results[int(index)] = EnqueueResult(existing.decode(), False)
        return results

    async def reserve(
        self,
        worker_id: str,
        limit: int,
        lease_for: float,
        now: float,
        queues: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` due tasks of unpaused queues, lowest (order key, id) first.

        One round trip (reserve.lua), atomic, so a task is claimed once across every process.
        Tasks that became due since the last call are moved to their queue's ready set first,
        earliest due first and at most max(PROMOTE_STEP, limit) per queue, so the call's cost
        is bounded however many fell due at once (later calls move the rest; during such a
        catch-up, tasks that became due within STARVATION_BOUND of each other may be taken
        out of tier order). Then the heads of the ready sets are merged. Each lease gets a
        fresh unguessable token; the attempt counter goes up by one. With server_clock, `now`
        is the server's TIME read by the script (the caller's `now` is not used).
        """
        check_limit(limit)
        check_lease_for(lease_for)
        chosen: list[str] = [] if queues is None else list(queues)
        if queues is not None and not chosen:
            self._limited_for = None
            return []
        # With server_clock the script reads the server's TIME: no estimate is needed.
        asked = float(now) if self._clock is None else 0.0
        base = secrets.token_hex(16)
        replies = await self._run(
            "reserve",
            worker_id,
            limit,
            asked,
            float(lease_for),
            base,
            max(PROMOTE_STEP, limit),
            -1 if queues is None else len(chosen),
            *chosen,
            "0" if self._clock is None else "1",  # whose now (reserve.lua)
        )
        wait = replies.pop()
        self._limited_for = float(wait) if wait else None
        now = float(replies.pop())
        expires_at = now + float(lease_for)
        return [
            Lease(
                record=decode_claim(values, worker_id, now, expires_at),
                token=f"{base}:{i}",
                expires_at=expires_at,
            )
            for i, values in enumerate(replies, 1)
        ]

    async def extend(
        self, leases: Sequence[Lease], lease_for: float, now: float
    ) -> list[LeaseStatus]:
        """Push each held lease to `now + lease_for`; say which are lost or asked to cancel.

        One round trip (extend.lua), atomic; one status per lease in input order.
        """
        check_lease_for(lease_for)
        if not leases:
            return []
        args: list[Any] = [await self._now(now) + float(lease_for)]
        for lease in leases:
            args += [lease.task_id, lease.token]
        return [LeaseStatus(s.decode()) for s in await self._run("extend", *args)]

    async def record_progress(self, reports: Sequence[ProgressReport], now: float) -> list[bool]:
        """Store each report's progress if its token is current (aligned bools).

        One round trip (progress.lua), atomic; a refused report changes nothing.
        """
        if not reports:
            return []
        args: list[Any] = []
        for report in reports:
            args += [report.task_id, report.token, pack(report.progress)]
        return [bool(applied) for applied in await self._run("progress", *args)]

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply a mixed batch of outcomes, each only with its current token.

        One round trip (settle.lua, the batch as one MessagePack argument), atomic as a whole;
        each outcome is applied or refused (False) independently of the others, in input order
        (a later outcome for the same task sees the earlier one's effect). A retry, snooze or
        release of a task with a cancel request cancels it (model.records). Publishes a
        wake-up if a task became due.
        """
        if not outcomes:
            return []
        now = await self._now(now)
        batch = settle_batch(outcomes, now)
        return [bool(applied) for applied in await self._run("settle", now, batch)]

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Move up to `limit` running tasks whose lease expired before `now` back to queued
        (or to cancelled, if cancel was requested; to dead, on their last attempt), earliest
        expiry first (ties by id), each with a history line for the lost attempt. One round
        trip (requeue_expired.lua), atomic; publishes a wake-up if any moved."""
        check_limit(limit)
        ids = await self._run(
            "requeue_expired",
            await self._now(now),
            limit,
            LEASE_EXPIRED,
            ResultStatus.FAILURE.value,
            ResultStatus.CANCELLED.value,
            EXHAUSTED,
        )
        return [task_id.decode() for task_id in ids]


def _without_server_clock(url: str) -> str:
    """The URL without `server_clock`, an option of the broker, not of redis-py."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    if all(k != "server_clock" for k, _ in query):
        return url
    rest = [(k, v) for k, v in query if k != "server_clock"]
    return urlunsplit(parts._replace(query=urlencode(rest)))
