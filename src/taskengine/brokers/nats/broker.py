"""The NATS JetStream broker (`nats://host:4222?stream=name`): every call of the hot path is
one operation appended to the stream's log and applied, in log order, by every process's
replica (ADR 0031). A call costs one publish (shared with the process's other calls of the
moment) and its answer comes back through the consumer; nothing is polled."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from taskengine.brokers.base import (
    DEFAULT_MAX_DEPTH,
    EnqueueResult,
    check_lease_for,
    check_limit,
)
from taskengine.brokers.nats import ops
from taskengine.brokers.nats.admin import NatsAdmin
from taskengine.brokers.server_clock import flag
from taskengine.errors import ConfigurationError
from taskengine.model import Lease, LeaseStatus, Outcome, ProgressReport, Task
from taskengine.model.unique import UniqueLock


class NatsBroker(NatsAdmin):
    """A JetStream stream as the log of every operation; see docs/adr/0031."""

    def __init__(
        self,
        url: str,
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
        stream: str = "taskengine",
        replicas: int | str = 1,
        allow_unsafe: bool | str = False,
        server_clock: bool | str = True,
        timeout: object = None,
        snapshot_ops: int | str = 100_000,
        snapshot_seconds: float | str = 600.0,
        **unknown: object,
    ) -> None:
        if unknown:
            raise ConfigurationError(
                f"unknown NATS broker options {sorted(unknown)}: use stream, replicas, "
                "allow_unsafe, server_clock, timeout, max_depth, snapshot_ops, snapshot_seconds"
            )
        try:
            replicas = int(replicas)
            snapshot_ops = int(snapshot_ops)
            snapshot_seconds = float(snapshot_seconds)
        except ValueError:
            raise ConfigurationError(
                f"replicas and snapshot_ops must be integers, snapshot_seconds a number: "
                f"{replicas!r}, {snapshot_ops!r}, {snapshot_seconds!r}"
            ) from None
        super().__init__(
            url,
            max_depth=max_depth,
            stream=stream,
            replicas=replicas,
            allow_unsafe=flag("allow_unsafe", allow_unsafe),
            server_clock=flag("server_clock", server_clock),
            timeout=timeout,
            snapshot_ops=snapshot_ops,
            snapshot_seconds=snapshot_seconds,
        )

    async def enqueue(
        self,
        tasks: Sequence[Task],
        now: float,
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        """Store tasks as queued (one operation: atomic, QueueFull refuses the whole batch);
        a task whose unique lock is held answers the holder (ADR 0038)."""
        if not tasks:
            return []
        locks = list(unique) if unique and any(lock is not None for lock in unique) else None
        result: list[EnqueueResult] = await self._write(
            ops.Enqueue(list(tasks), now, self.max_depth, locks)
        )
        return result

    async def reserve(
        self,
        worker_id: str,
        limit: int,
        lease_for: float,
        now: float,
        queues: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` due tasks, lowest (order_key, id) first (one operation)."""
        check_limit(limit)
        check_lease_for(lease_for)
        chosen = list(queues) if queues is not None else None
        op = ops.Reserve(worker_id, limit, lease_for, now, chosen, secrets.token_hex(8))
        result: ops.Reserved = await self._write(op)
        self._limited_for = result.limited_for
        return result.leases

    @property
    def limited_for(self) -> float | None:
        """Seconds until an empty bucket this process's last reserve saw gets a token (the
        replica's answer to that reserve, ADR 0038)."""
        return self._limited_for

    async def extend(
        self, leases: Sequence[Lease], lease_for: float, now: float
    ) -> list[LeaseStatus]:
        """Push held leases to `now + lease_for`; report lost ones (one operation)."""
        check_lease_for(lease_for)
        if not leases:
            return []
        held = [(lease.task_id, lease.token) for lease in leases]
        result: list[LeaseStatus] = await self._write(ops.Extend(held, lease_for, now))
        return result

    async def record_progress(self, reports: Sequence[ProgressReport], now: float) -> list[bool]:
        """Store each report whose token is current (one operation)."""
        if not reports:
            return []
        result: list[bool] = await self._write(ops.RecordProgress(list(reports), now))
        return result

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply each outcome whose token is current (one operation)."""
        if not outcomes:
            return []
        result: list[bool] = await self._write(ops.Settle(list(outcomes), now))
        return result

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Requeue (or end) running tasks whose lease ran out before `now` (one operation)."""
        check_limit(limit)
        result: list[str] = await self._write(ops.RequeueExpired(now, limit))
        return result


__all__ = ["NatsBroker"]
