"""The admin half of the Redis broker: inspection, cancel/replay/purge, pause, registry, leader.

Each method is one round trip: a script (atomic) or one MULTI/EXEC transaction (atomic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from taskengine.brokers.base import (
    CONTROL_TTL,
    CancelResult,
    Control,
    CountRow,
    InstanceReport,
    Page,
    ReplayResult,
    TaskFilter,
    check_limit,
)
from taskengine.brokers.redis.codec import decode_limit, decode_record, decode_records, encode_limit
from taskengine.brokers.redis.connection import RedisConnection
from taskengine.brokers.redis.scripts import unavailable
from taskengine.brokers.server_clock import ServerClock
from taskengine.model import Priority, TaskRecord, TaskState
from taskengine.model.limits import Limit, check_limit_values
from taskengine.model.records import cancelled_result
from taskengine.model.serializer import pack
from taskengine.model.state import TERMINAL_STATES
from taskengine.model.worker import WorkerInfo

LIST_BUDGET = 5000  # ids one list_tasks call examines at most, however selective the filter
_worker = msgspec.msgpack.Decoder(WorkerInfo)
_control = msgspec.msgpack.Decoder(Control)


class RedisAdmin(RedisConnection):
    """Inspection and control; see BrokerAdmin in brokers/base.py for the contract.

    With `server_clock` (the default), the server's clock (`TIME`) is the "now" of every
    operation that takes one, whatever the caller passes (brokers.server_clock, ADR 0006).
    """

    def __init__(
        self,
        url: str,
        *,
        max_depth: int,
        namespace: str,
        url_params: dict[str, str],
        server_clock: bool = True,
    ) -> None:
        super().__init__(url, max_depth=max_depth, namespace=namespace, url_params=url_params)
        self._clock = ServerClock(self._server_time) if server_clock else None

    async def start(self) -> None:
        """Connect as RedisConnection.start does; then read the server's time if it is used."""
        await super().start()
        if self._clock is not None:
            await self._clock.sync()

    async def _now(self, now: float) -> float:
        """The "now" of an operation: the server's time, or the caller's without server_clock."""
        return float(now) if self._clock is None else await self._clock.now()

    async def _server_time(self) -> float:
        try:
            [(seconds, micros)] = await self._transaction(("TIME",))
        except ResponseError as exc:  # BUSY: as a script call would say it
            mapped = unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return int(seconds) + int(micros) / 1_000_000

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Return each record, or None where unknown.

        One round trip (HGETALL per id in one MULTI/EXEC): a consistent snapshot.
        """
        if not ids:
            return []
        replies = await self._transaction(*(("HGETALL", self.keys.task(i)) for i in ids))
        return [decode_record(_as_dict(r)) if r else None for r in replies]

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Return matching tasks newest first (by id), at most `limit`, after `cursor`.

        One round trip (list.lua): ids are walked down from the cursor and filtered on the
        server. At most LIST_BUDGET ids are examined per call: a selective filter over many
        tasks may return a short (even empty) page whose cursor continues the walk.
        """
        check_limit(limit)
        args: list[Any] = [
            cursor or "",
            limit,
            LIST_BUDGET,
            "" if filter.created_after is None else float(filter.created_after),
            "" if filter.created_before is None else float(filter.created_before),
        ]
        for values in (
            filter.states and [s.value for s in filter.states],
            filter.types,
            filter.queues,
            filter.priorities and [int(p) for p in filter.priorities],
        ):
            if values is None:
                args.append(-1)
            else:
                args.extend([len(values), *values])
        args.append(filter.workflow or "")
        more, resume, *flats = await self._run("list", *args)
        items = decode_records(flats)
        if resume:
            return Page(items, resume.decode())
        return Page(items, items[-1].id if more and items else None)

    async def counts(self) -> list[CountRow]:
        """Task counts per (queue, state, priority), with the oldest creation time of queued ones.

        One round trip (counts.lua), atomic; proportional to the number of groups, not tasks.
        """
        rows = []
        for member, count, oldest in await self._run("counts"):
            queue, state, priority = member.decode().rsplit("|", 2)
            first = float(oldest) if oldest else None
            rows.append(CountRow(queue, TaskState(state), Priority(int(priority)), count, first))
        return sorted(rows, key=lambda r: (r.queue, r.state, r.priority))

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued tasks at once and flag running ones for their worker's next extend.

        One round trip (cancel.lua), atomic; one answer per id in input order.
        """
        if not ids:
            return []
        now = await self._now(now)
        args: list[Any] = [now]
        for task_id in ids:
            args += [task_id, pack(cancelled_result(task_id, now))]
        return [CancelResult(a.decode()) for a in await self._run("cancel", *args)]

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued, due now, attempt count reset.

        One round trip (replay.lua), atomic; publishes a wake-up if any was replayed.
        """
        if not ids:
            return []
        answers = await self._run("replay", await self._now(now), *ids)
        return [ReplayResult(a.decode()) for a in answers]

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` terminal tasks in `states` finished before the time, earliest
        finished first. One round trip (purge.lua), atomic."""
        check_limit(limit)
        wanted = sorted({TaskState(s) for s in states} & TERMINAL_STATES)
        if not wanted:
            return 0
        return int(await self._run("purge", float(finished_before), limit, *wanted))

    async def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete finished tasks by id. One round trip (delete.lua), atomic."""
        if not ids:
            return []
        return [bool(flag) for flag in await self._run("delete", *ids)]

    async def purge_kept(self, now: float, limit: int) -> int:
        """Delete up to `limit` succeeded tasks whose own retention ran out before `now`,
        earliest expiry first. One round trip (purge_kept.lua), atomic."""
        check_limit(limit)
        return int(await self._run("purge_kept", await self._now(now), limit))

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop `reserve` from taking tasks of these queues. One round trip (SADD)."""
        if queues:
            await self._transaction(("SADD", self.keys.paused, *queues))

    async def resume(self, queues: Sequence[str]) -> None:
        """Let `reserve` take these queues again and wake waiters. One round trip, atomic."""
        if queues:
            await self._transaction(
                ("SREM", self.keys.paused, *queues), ("PUBLISH", self.keys.wake, "1")
            )

    async def paused(self) -> set[str]:
        """Return the paused queue names. One round trip."""
        [members] = await self._transaction(("SMEMBERS", self.keys.paused))
        return {m.decode() for m in members}

    async def send_control(self, instance: str, controls: Sequence[Control]) -> None:
        """Append commands to the instance's list, which expires CONTROL_TTL after the last
        send. One round trip (MULTI/EXEC), atomic."""
        if controls:
            key = self.keys.control(instance)
            await self._transaction(
                ("RPUSH", key, *(pack(c) for c in controls)), ("EXPIRE", key, int(CONTROL_TTL))
            )

    async def take_controls(self, instance: str) -> list[Control]:
        """Remove and return the instance's commands, oldest first. One round trip, atomic."""
        key = self.keys.control(instance)
        blobs, _ = await self._transaction(("LRANGE", key, 0, -1), ("DEL", key))
        return [_control.decode(blob) for blob in blobs]

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Store each limit in place of its scope's, keeping its bucket; an empty one removes
        it with its bucket (ADR 0038). One round trip (MULTI/EXEC), atomic; wakes waiters."""
        for limit in limits:
            check_limit_values(limit)
        if not limits:
            return
        commands: list[tuple[Any, ...]] = []
        for limit in limits:
            member = f"{limit.scope}|{limit.name}"
            if limit.empty:
                commands.append(("HDEL", self.keys.limits, member))
                commands.append(("HDEL", self.keys.buckets, member))
            else:
                commands.append(("HSET", self.keys.limits, member, encode_limit(limit)))
        commands.append(("PUBLISH", self.keys.wake, "1"))
        await self._transaction(*commands)

    async def limits(self) -> list[Limit]:
        """Return the stored limits by (scope, name). One round trip (HGETALL)."""
        [flat] = await self._transaction(("HGETALL", self.keys.limits))
        found = [decode_limit(k.decode(), v.decode()) for k, v in _as_dict(flat).items()]
        return sorted(found, key=lambda limit: (limit.scope, limit.name))

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace workers by id. One round trip (MULTI/EXEC), atomic."""
        if not workers:
            return
        blobs = [x for w in workers for x in (w.id, pack(w))]
        seen = [x for w in workers for x in (w.last_seen, w.id)]
        await self._transaction(
            ("HSET", self.keys.workers, *blobs), ("ZADD", self.keys.workers_seen, *seen)
        )

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove workers by id. One round trip (MULTI/EXEC), atomic."""
        if ids:
            await self._transaction(
                ("HDEL", self.keys.workers, *ids), ("ZREM", self.keys.workers_seen, *ids)
            )

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Return workers whose last heartbeat is at or after `seen_since`, by id.

        Two round trips (the ids by last_seen, then their records); a worker forgotten in
        between is left out.
        """
        [ids] = await self._transaction(
            ("ZRANGEBYSCORE", self.keys.workers_seen, float(seen_since), "+inf")
        )
        if not ids:
            return []
        [blobs] = await self._transaction(("HMGET", self.keys.workers, *ids))
        found = [_worker.decode(b) for b in blobs if b is not None]
        return sorted(found, key=lambda w: w.id)

    async def record_instance(self, instance: str, data: bytes, now: float, ttl: float) -> None:
        """Replace the report and drop those expired before `now`. One round trip
        (record_instance.lua), atomic; expiry is judged by the caller's `now`, as the worker
        registry's last_seen is."""
        await self._run("record_instance", instance, float(now), float(now + ttl), data)

    async def instances(self, now: float) -> list[InstanceReport]:
        """The reports not expired at `now`, by instance. Two round trips (the names by
        expiry, then their bytes); a report dropped in between is left out."""
        [named] = await self._transaction(
            ("ZRANGEBYSCORE", self.keys.instances_expiry, float(now), "+inf", "WITHSCORES")
        )
        if not named:
            return []
        names = [name for name, _ in named]
        [blobs] = await self._transaction(("HMGET", self.keys.instances, *names))
        found = [
            InstanceReport(name.decode(), float(expires_at), bytes(blob))
            for (name, expires_at), blob in zip(named, blobs, strict=True)
            if blob is not None
        ]
        return sorted(found, key=lambda r: r.instance)

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take or renew singleton duty `name` for `holder` until `now + ttl`; True if held.

        One round trip (leader.lua), atomic; expiry is judged by the server's clock (or the
        caller's `now` without server_clock).
        """
        now = await self._now(now)
        return bool(await self._run("leader", name, holder, now, now + ttl))

    async def resign(self, name: str, holder: str) -> None:
        """Give up `name` if `holder` holds it. One round trip (resign.lua), atomic."""
        await self._run("resign", name, holder)


def _as_dict(reply: Any) -> dict[bytes, bytes]:
    return dict(reply)
