"""The admin half of the PostgreSQL broker: inspection, cancel/replay/purge, pause, registry,
leader. Each method is one statement: one round trip, atomic."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
from taskengine.brokers.batches import unique_sorted
from taskengine.brokers.postgres import queries as q
from taskengine.brokers.postgres import waits
from taskengine.brokers.postgres.codec import (
    HEADS,
    cancelled_result_blob,
    decode_worker,
    limit_from_row,
    record_from_row,
    worker_arrays,
)
from taskengine.brokers.postgres.connection import PostgresConnection
from taskengine.brokers.postgres.listing import list_query
from taskengine.brokers.server_clock import ServerClock, flag
from taskengine.errors import ConfigurationError
from taskengine.model import Priority, TaskRecord, TaskState
from taskengine.model.limits import Limit, check_limit_values
from taskengine.model.serializer import pack, unpack
from taskengine.model.state import TERMINAL_STATES
from taskengine.model.worker import WorkerInfo


class PostgresAdmin(PostgresConnection):
    """Inspection and control; see BrokerAdmin in brokers/base.py for the contract.

    With `server_clock` (the default), the database's clock (`clock_timestamp()`) is the
    "now" of every operation that takes one, whatever the caller passes
    (brokers.server_clock, ADR 0006).
    """

    def __init__(
        self,
        url: str,
        *,
        max_depth: int | None = None,
        schema: str | None = None,
        pool_size: int | str | None = None,
        server_clock: bool | str | None = None,
        url_params: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            url, max_depth=max_depth, schema=schema, pool_size=pool_size, url_params=url_params
        )
        use = self.config.server_clock  # the URL's word, if it has one
        if server_clock is not None:
            given = flag("server_clock", server_clock)
            if use is not None and use != given:
                raise ConfigurationError(
                    f"server_clock is {server_clock!r} but the URL says {not given!r}"
                )
            use = given
        self._clock = None if use is False else ServerClock(self._server_time)

    async def start(self) -> None:
        """Start as PostgresConnection.start does; then read the database's time if it is used."""
        await super().start()
        if self._clock is not None:
            await self._clock.sync()

    async def _now(self, now: float) -> float:
        """The "now" of an operation: the database's time, or the caller's without
        server_clock."""
        return float(now) if self._clock is None else await self._clock.now()

    async def _server_time(self) -> float:
        return float(await self._fetchval(q.SERVER_TIME))

    async def get(self, ids: Sequence[str]) -> list[TaskRecord | None]:
        """Return each record with its history, or None where unknown, in input order.

        One round trip: one snapshot, so a record and its history never disagree.
        """
        if not ids:
            return []
        rows = await self._fetch(q.GET, unique_sorted(ids))
        found = {row["id"]: record_from_row(row) for row in rows}
        return [found.get(task_id) for task_id in ids]

    async def list_tasks(self, filter: TaskFilter, limit: int, cursor: str | None = None) -> Page:
        """Return matching tasks newest first (by id), at most `limit`, with ids below `cursor`.

        One round trip; next_cursor is the last id when more tasks match.
        """
        check_limit(limit)
        template, params = list_query(filter, limit + 1, cursor)
        rows = await self._fetch(template, *params)
        items = [record_from_row(row) for row in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def counts(self) -> list[CountRow]:
        """Task counts per (queue, state, priority), ordered so; one round trip (a full scan)."""
        return [
            CountRow(
                row["queue"],
                TaskState(row["state"]),
                Priority(row["priority"]),
                row["count"],
                row["oldest"],
            )
            for row in await self._fetch(q.COUNTS)
        ]

    async def cancel(self, ids: Sequence[str], now: float) -> list[CancelResult]:
        """Cancel queued tasks at once and flag running ones for their worker's next extend.

        One round trip; atomic; aligned with `ids`. A repeated id sees the first one's
        effect (a task cancelled by it is FINISHED the second time).
        """
        if not ids:
            return []
        unique = unique_sorted(ids)
        now = await self._now(now)
        blobs = [cancelled_result_blob(task_id, now) for task_id in unique]

        async def work(conn: Any) -> list[Any]:
            rows = await conn.fetch(self.sql(q.CANCEL), unique, blobs, now)
            ended = [
                (row["id"], TaskState.CANCELLED) for row in rows if row["changed"] == "cancelled"
            ]
            await waits.release(conn, self.sql, ended, now)
            return list(rows)

        rows = await self._transaction(work)
        changed = {row["id"]: row["changed"] for row in rows}
        results: list[CancelResult] = []
        answered: set[str] = set()
        for task_id in ids:
            if task_id not in changed:
                results.append(CancelResult.NOT_FOUND)
            elif changed[task_id] == TaskState.RUNNING:
                results.append(CancelResult.REQUESTED)
            elif changed[task_id] == TaskState.CANCELLED and task_id not in answered:
                results.append(CancelResult.CANCELLED)
            else:
                results.append(CancelResult.FINISHED)
            answered.add(task_id)
        return results

    async def replay(self, ids: Sequence[str], now: float) -> list[ReplayResult]:
        """Move dead or cancelled tasks back to queued, due now, attempt count 0, history kept.

        One round trip; atomic; aligned with `ids` (a repeated id is NOT_REPLAYABLE the
        second time: it is queued by then). Wakes waiters if any was replayed.
        """
        if not ids:
            return []
        now = await self._now(now)

        async def work(conn: Any) -> dict[str, bool]:
            return await waits.replay(conn, self.sql, ids, now, HEADS)

        replayed = await self._transaction(work)
        results: list[ReplayResult] = []
        answered: set[str] = set()
        for task_id in ids:
            if task_id not in replayed:
                results.append(ReplayResult.NOT_FOUND)
            elif replayed[task_id] and task_id not in answered:
                results.append(ReplayResult.REPLAYED)
            else:
                results.append(ReplayResult.NOT_REPLAYABLE)
            answered.add(task_id)
        return results

    async def purge(self, states: Sequence[TaskState], finished_before: float, limit: int) -> int:
        """Delete up to `limit` terminal tasks in `states` finished before the cutoff (earliest
        first) with their history; return how many. One round trip; atomic."""
        check_limit(limit)
        wanted = sorted(TaskState(s).value for s in set(states) & TERMINAL_STATES)
        if not wanted:
            return 0
        return int(await self._fetchval(q.PURGE, wanted, float(finished_before), limit))

    async def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete finished tasks by id. One round trip; atomic."""
        if not ids:
            return []
        gone = {row["id"] for row in await self._fetch(q.DELETE, list(ids))}
        return [task_id in gone for task_id in ids]

    async def purge_kept(self, now: float, limit: int) -> int:
        """Delete up to `limit` succeeded tasks whose own retention ran out before `now`
        (earliest expiry first); return how many. One round trip; atomic."""
        check_limit(limit)
        return int(await self._fetchval(q.PURGE_KEPT, float(await self._now(now)), limit))

    async def pause(self, queues: Sequence[str]) -> None:
        """Stop `reserve` (of every process) from taking these queues. One round trip."""
        if queues:
            await self._execute(q.PAUSE, list(queues))

    async def resume(self, queues: Sequence[str]) -> None:
        """Let `reserve` take these queues again and wake every waiter. One round trip."""
        await self._execute(q.RESUME, list(queues), self.config.channel)

    async def paused(self) -> set[str]:
        """The paused queue names. One round trip."""
        return {row["queue"] for row in await self._fetch(q.PAUSED)}

    async def send_control(self, instance: str, controls: Sequence[Control]) -> None:
        """Append commands to the instance's channel. One round trip; atomic."""
        if controls:
            newest = max(c.sent_at for c in controls)
            await self._execute(
                q.SEND_CONTROL,
                instance,
                [float(c.sent_at) for c in controls],
                [pack(c) for c in controls],
                newest - CONTROL_TTL,
            )

    async def take_controls(self, instance: str) -> list[Control]:
        """Remove and return the instance's commands, oldest first. One round trip; atomic."""
        rows = await self._fetch(q.TAKE_CONTROLS, instance)
        return [unpack(row["control"], Control) for row in sorted(rows, key=lambda r: r["seq"])]

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Store each limit in place of its scope's, keeping its bucket; an empty one removes
        it (ADR 0038). One round trip; atomic; wakes every waiter."""
        for limit in limits:
            check_limit_values(limit)
        if not limits:
            return
        latest = {(str(lim.scope), lim.name): lim for lim in limits}  # a later one wins
        put = [lim for lim in latest.values() if not lim.empty]
        gone = [lim for lim in latest.values() if lim.empty]
        await self._execute(
            q.SET_LIMITS,
            [str(lim.scope) for lim in put],
            [lim.name for lim in put],
            [lim.max_concurrency for lim in put],
            [lim.rate for lim in put],
            [lim.burst for lim in put],
            [str(lim.scope) for lim in gone],
            [lim.name for lim in gone],
            self.config.channel,
        )
        self._has_limits = bool(put) or self._has_limits

    async def limits(self) -> list[Limit]:
        """The stored limits by (scope, name). One round trip."""
        return [limit_from_row(row) for row in await self._fetch(q.LIMITS)]

    async def record_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """Insert or replace these workers by id (a later duplicate in the batch wins).
        One round trip; atomic."""
        if workers:
            await self._execute(q.RECORD_WORKERS, *worker_arrays(workers))

    async def forget_workers(self, ids: Sequence[str]) -> None:
        """Remove these workers. One round trip; atomic."""
        if ids:
            await self._execute(q.FORGET_WORKERS, list(ids))

    async def workers(self, seen_since: float) -> list[WorkerInfo]:
        """Workers last seen at or after `seen_since`, by id. One round trip."""
        rows = await self._fetch(q.WORKERS, float(seen_since))
        return [decode_worker(row["info"]) for row in rows]

    async def record_instance(self, instance: str, data: bytes, now: float, ttl: float) -> None:
        """Replace the report and drop those expired before `now`. One round trip; atomic."""
        await self._execute(q.RECORD_INSTANCE, instance, float(now), float(now + ttl), data)

    async def instances(self, now: float) -> list[InstanceReport]:
        """The reports not expired at `now`, by instance. One round trip."""
        rows = await self._fetch(q.INSTANCES, float(now))
        return [InstanceReport(r["instance"], r["expires_at"], bytes(r["data"])) for r in rows]

    async def leader(self, name: str, holder: str, ttl: float, now: float) -> bool:
        """Take `name` if free or expired, renew it if `holder` has it; True if held.

        One round trip, one atomic upsert; expiry is judged by the database's clock (the
        caller's `now` without server_clock), so two holders never hold `name` at once
        whatever their own clocks say.
        """
        now = await self._now(now)
        row = await self._fetchval(q.LEADER, name, holder, now, now + ttl)
        return row is not None

    async def resign(self, name: str, holder: str) -> None:
        """Free `name` if `holder` holds it. One round trip."""
        await self._execute(q.RESIGN, name, holder)
