"""The Redis broker: shared by any number of processes and hosts, one Lua script per operation.

Each hot-path method is one round trip (EVALSHA) that is atomic on the server, whatever the
batch size; see lua/*.lua for what each script reads and writes and keys.py for the key layout.
Every "now" is the caller's, passed to the scripts; lease tokens are made here (secrets).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    EnqueueResult,
    check_lease_for,
    check_limit,
)
from taskengine.brokers.memory import LEASE_EXPIRED
from taskengine.brokers.redis.admin import RedisAdmin
from taskengine.brokers.redis.codec import decode_claim, enqueue_args, settle_args
from taskengine.errors import QueueFull
from taskengine.model import Lease, LeaseStatus, Outcome, ResultStatus, Task


class RedisBroker(RedisAdmin):
    """A broker on a Redis 6.2+ server (or a managed one): `redis://host:6379/0?namespace=x`.

    Every key of a namespace shares the hash tag `{te:<namespace>}`, so namespaces isolate
    engines on one server. Redis Cluster is not supported (a cluster URL or a cluster-mode
    server is refused); the shared hash tag would let a later version run there.
    Query parameters of the URL other than `namespace`, `max_depth` and `timeout` (the
    deadline of each call, seconds) go to redis-py (they also arrive here as keywords from
    `open_broker`, and are accepted only if they match the URL). The server must not evict
    keys (`maxmemory-policy` noeviction or volatile-*); its persistence decides
    `capabilities.durable` (read at start, logged).
    """

    def __init__(
        self,
        url: str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        namespace: str = "default",
        **url_params: str,
    ) -> None:
        super().__init__(url, max_depth=max_depth, namespace=namespace, url_params=url_params)

    async def enqueue(self, tasks: Sequence[Task], now: float) -> list[EnqueueResult]:
        """Store tasks as queued, one result per task in input order.

        One round trip (enqueue.lua); atomic: on QueueFull nothing is stored. Duplicates by
        id, then idempotency key, stored or earlier in the batch, answer the first task's id
        with created=False. Publishes a wake-up if anything was stored.
        """
        if not tasks:
            return []
        args: list[Any] = [float(now), self.max_depth, len(tasks)]
        for task in tasks:
            args += enqueue_args(task)
        status, *rest = await self._run("enqueue", *args)
        if status == b"full":
            depth, offered = rest
            raise QueueFull(int(depth), self.max_depth, int(offered))
        return [
            EnqueueResult(task_id.decode(), bool(created))
            for task_id, created in zip(rest[::2], rest[1::2], strict=True)
        ]

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
        Tasks that became due since the last call are moved to their queue's ready set first
        (cost proportional to them); then the heads of the ready sets are merged. Each lease
        gets a fresh unguessable token; the attempt counter goes up by one.
        """
        check_limit(limit)
        check_lease_for(lease_for)
        expires_at = now + lease_for
        chosen: list[str] = [] if queues is None else list(queues)
        if queues is not None and not chosen:
            return []
        now, expires_at, base = float(now), float(expires_at), secrets.token_hex(16)
        replies = await self._run(
            "reserve",
            worker_id,
            limit,
            now,
            expires_at,
            base,
            -1 if queues is None else len(chosen),
            *chosen,
        )
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
        args: list[Any] = [float(now + lease_for)]
        for lease in leases:
            args += [lease.task_id, lease.token]
        return [LeaseStatus(s.decode()) for s in await self._run("extend", *args)]

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply a mixed batch of outcomes, each only with its current token.

        One round trip (settle.lua), atomic as a whole; each outcome is applied or refused
        (False) independently of the others, in input order (a later outcome for the same
        task sees the earlier one's effect). Publishes a wake-up if a task became due.
        """
        if not outcomes:
            return []
        args: list[Any] = [float(now)]
        for outcome in outcomes:
            args += settle_args(outcome)
        return [bool(applied) for applied in await self._run("settle", *args)]

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Move up to `limit` running tasks whose lease expired before `now` back to queued
        (or to cancelled, if cancel was requested), earliest expiry first (ties by id), each
        with a history line for the lost attempt. One round trip (requeue_expired.lua),
        atomic; publishes a wake-up if any moved."""
        check_limit(limit)
        ids = await self._run(
            "requeue_expired",
            float(now),
            limit,
            LEASE_EXPIRED,
            ResultStatus.FAILURE.value,
            ResultStatus.CANCELLED.value,
        )
        return [task_id.decode() for task_id in ids]
