"""The admin half of the NATS broker: reads served by the replica once it has caught up with
the log (one stream-info request, then no round trip), writes appended to the log (one publish,
grouped with whatever else this process writes at the time). Each write is one operation of
the log, so it is atomic however many tasks it touches."""

from __future__ import annotations

from collections.abc import Sequence

from taskengine.brokers.base import (
    CancelResult,
    Control,
    CountRow,
    InstanceReport,
    Page,
    ReplayResult,
    TaskFilter,
    check_limit,
)
from taskengine.brokers.nats import ops
from taskengine.brokers.nats.connection import NatsConnection
from taskengine.model import TaskRecord, TaskState
from taskengine.model.limits import Limit, check_limit_values
from taskengine.model.worker import WorkerInfo


class NatsAdmin(NatsConnection):
    """Inspection and control; see BrokerAdmin in brokers/base.py for the contract."""

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Return each record, or None where unknown (one round trip)."""
        return await (await self._caught_up()).get(ids)

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Return matching tasks newest first by id, after `cursor` (one round trip)."""
        check_limit(limit)
        return await (await self._caught_up()).list_tasks(filter, limit, cursor)

    async def counts(self) -> list[CountRow]:
        """Count tasks per (queue, state, priority) (one round trip)."""
        return await (await self._caught_up()).counts()

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued tasks now; flag running ones (one operation)."""
        result: list[CancelResult] = await self._write(ops.Cancel(list(ids), now))
        return result

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Queue dead or cancelled tasks again (one operation)."""
        result: list[ReplayResult] = await self._write(ops.Replay(list(ids), now))
        return result

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` terminal tasks finished before the cutoff (one operation)."""
        check_limit(limit)
        result: int = await self._write(ops.Purge(list(states), finished_before, limit))
        return result

    async def purge_kept(self, now: float, limit: int) -> int:
        """Delete up to `limit` succeeded tasks whose own retention ran out (one operation)."""
        check_limit(limit)
        result: int = await self._write(ops.PurgeKept(now, limit))
        return result

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop reserving from these queues (one operation)."""
        await self._write(ops.Pause(list(queues), resume=False))

    async def resume(self, queues: Sequence[str]) -> None:
        """Reserve from these queues again (one operation)."""
        await self._write(ops.Pause(list(queues), resume=True))

    async def paused(self) -> set[str]:
        """Return the paused queues (one round trip)."""
        return await (await self._caught_up()).paused()

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Store each limit in place of its scope's; an empty one removes it (one operation,
        ADR 0038)."""
        for limit in limits:
            check_limit_values(limit)
        if limits:
            await self._write(ops.SetLimits(list(limits)))

    async def limits(self) -> list[Limit]:
        """Return the stored limits by (scope, name) (one round trip)."""
        return await (await self._caught_up()).limits()

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace workers by id (one operation)."""
        if workers:
            await self._write(ops.RecordWorkers(list(workers)))

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove workers by id (one operation)."""
        if ids:
            await self._write(ops.ForgetWorkers(list(ids)))

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Return workers seen at or after `seen_since`, by id (one round trip)."""
        return await (await self._caught_up()).workers(seen_since)

    async def record_instance(self, instance: str, data: bytes, now: float, ttl: float) -> None:
        """Insert or replace `instance`'s report until `now + ttl` (one operation)."""
        await self._write(ops.RecordInstance(instance, data, now, ttl))

    async def instances(self, now: float) -> list[InstanceReport]:
        """Return the reports not expired at `now`, by instance (one round trip)."""
        return await (await self._caught_up()).instances(now)

    async def send_control(self, instance: str, controls: Sequence[Control]) -> None:
        """Append commands to the instance's channel (one operation, ADR 0036)."""
        if controls:
            await self._write(ops.SendControl(instance, list(controls)))

    async def take_controls(self, instance: str) -> list[Control]:
        """Remove and return the instance's commands, oldest first: the replica is read first,
        so a poll with nothing waiting writes nothing to the log (one operation otherwise)."""
        if not (await self._caught_up()).has_controls(instance):
            return []
        result: list[Control] = await self._write(ops.TakeControls(instance))
        return result

    async def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete finished tasks by id (one operation)."""
        if not ids:
            return []
        result: list[bool] = await self._write(ops.Delete(list(ids)))
        return result

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take `name` if free or expired, renew it if `holder` has it (one operation)."""
        result: bool = await self._write(ops.Leader(name, holder, ttl, now))
        return result

    async def resign(self, name: str, holder: str) -> None:
        """Free `name` if `holder` has it (one operation)."""
        await self._write(ops.Leader(name, holder, None, 0.0))
