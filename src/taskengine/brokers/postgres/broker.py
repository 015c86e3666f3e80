"""The PostgreSQL broker: shared by any number of processes and hosts on one database.

`reserve` is one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`, so concurrent reservers
never wait for each other nor claim one task twice; every batch travels as arrays, so a batch
is one statement whatever its size (see queries.py for each statement and schema.py for the
tables). Every "now" is a parameter: the database's clock (`clock_timestamp()`, read now and
then and carried forward; brokers.server_clock) unless `server_clock=false`, then the caller's;
with it, `RESERVE` and the enqueue's lock statement read `clock_timestamp()` themselves
(readiness by the database's own clock). Lease tokens come from `gen_random_uuid()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskengine.brokers.base import (
    EnqueueResult,
    check_lease_for,
    check_limit,
)
from taskengine.brokers.batches import Pair, first_of_each, lock_keys, split_new, split_unique
from taskengine.brokers.limits import Gate
from taskengine.brokers.postgres import queries as q
from taskengine.brokers.postgres import waits
from taskengine.brokers.postgres.admin import PostgresAdmin
from taskengine.brokers.postgres.codec import (
    HEADS,
    expiry_arrays,
    limit_from_row,
    progress_arrays,
    record_from_row,
    settle_arrays,
    task_arrays,
)
from taskengine.brokers.postgres.schema import lock_key
from taskengine.errors import QueueFull
from taskengine.model import (
    TERMINAL_STATES,
    Lease,
    LeaseStatus,
    Outcome,
    Priority,
    ProgressReport,
    Task,
    TaskState,
)
from taskengine.model.limits import LimitScope
from taskengine.model.priority import HEAD_START, order_key
from taskengine.model.records import as_received
from taskengine.model.unique import UniqueLock, decode_states, encode_states, lock_holds

# Candidate rounds per reserve under limits: a round a partly full scope refused tasks of is
# followed by one that skips the scopes now full, so tasks behind them are still claimed.
_LIMITED_ROUNDS = 3


MIN_HEAD = min(HEAD_START.values())  # RESERVE's $5: the index range scan stops at now - it


class PostgresBroker(PostgresAdmin):
    """A broker on PostgreSQL 13+: `postgresql://user@host:5432/db?schema=name`.

    All tables live in `schema` (default `taskengine`), created at start, so engines sharing
    one database stay apart. Query parameters other than `schema`, `max_depth`, `pool_size`
    (the most connections this broker opens, default 10, plus one for LISTEN), `migrate`,
    `timeout` (the deadline of each call, seconds) and `server_clock` go to asyncpg; they also
    arrive here as keywords from `open_broker` and are accepted only if they match the URL.
    `server_clock` (default true): lease expiry, readiness and the times the broker records
    follow the database's clock, so hosts whose clocks disagree decide alike (ADR 0006); false:
    the caller's `now` (a fake clock).
    """

    def __init__(
        self,
        url: str,
        *,
        max_depth: int | None = None,
        schema: str | None = None,
        pool_size: int | str | None = None,
        server_clock: bool | str | None = None,
        **url_params: str,
    ) -> None:
        super().__init__(
            url,
            max_depth=max_depth,
            schema=schema,
            pool_size=pool_size,
            server_clock=server_clock,
            url_params=url_params,
        )
        self._enqueue_lock = lock_key("enqueue", self.schema)

    async def enqueue(
        self,
        tasks: Sequence[Task],
        now: float,
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        """Store tasks as queued, one result per task in input order. A batch with unique
        locks (ADR 0038) also looks them up and stores those taken: two statements more.

        One transaction of three statements (lock, look up, insert): five round trips with
        BEGIN and COMMIT. Enqueues of one schema take turns on an advisory lock, so the depth
        check is exact across processes. Atomic: on QueueFull (or any error) nothing is
        stored. Duplicates by id, then idempotency key, stored or earlier in the batch, answer
        the first task's id with created=False. Waiters are woken on commit (NOTIFY).
        """
        if not tasks:
            self._live()
            return []
        ids = [t.id for t in tasks]
        keys = [t.idempotency_key for t in tasks if t.idempotency_key is not None]
        now = await self._now(now)

        async def work(conn: Any) -> list[EnqueueResult]:
            nonlocal now
            server_now = await conn.fetchval(self.sql(q.LOCK_ENQUEUE), self._enqueue_lock)
            if self._clock is not None:  # judged by the database's clock (ADR 0006)
                now = float(server_now)
            found = await conn.fetchrow(self.sql(q.ENQUEUE_LOOKUP), ids, keys)
            known_keys = dict(zip(found["keys"] or [], found["key_ids"] or [], strict=True))
            results, fresh = split_new(tasks, set(found["ids"] or []), known_keys)
            taken: list[tuple[Task, UniqueLock]] = []
            if unique:
                rows = await conn.fetch(self.sql(q.SELECT_LOCKS), lock_keys(unique))
                held = {
                    row["key"]: row["task_id"]
                    for row in rows
                    if lock_holds(
                        row["until"],
                        decode_states(row["states"]),
                        row["state"] and TaskState(row["state"]),
                        now,
                    )
                }
                results, fresh, taken = split_unique(results, fresh, unique, tasks, held)
            depth = int(found["depth"])
            if depth + len(fresh) > self.max_depth:  # as the reference: also when none is new
                raise QueueFull(depth, self.max_depth, len(fresh))
            if fresh:
                received = [as_received(task, now) for task in fresh]
                gates, edges = await waits.gate_new(conn, self.sql, received, now)
                arrays = task_arrays(received, gates)
                await conn.execute(self.sql(q.INSERT_TASKS), *arrays[:13], now, *arrays[13:])
                await waits.store_edges(conn, self.sql, edges)
            if taken:  # after the tasks: each lock references its holder
                await conn.execute(
                    self.sql(q.PUT_LOCKS),
                    [lock.key for _, lock in taken],
                    [task.id for task, _ in taken],
                    [lock.until(now) for _, lock in taken],
                    [encode_states(lock.states) for _, lock in taken],
                )
            return results

        return await self._transaction(work)

    async def reserve(
        self,
        worker_id: str,
        limit: int,
        lease_for: float,
        now: float,
        queues: Sequence[str] | None = None,
    ) -> list[Lease]:
        """Claim up to `limit` due tasks of unpaused queues, lowest (order key, id) first.

        One round trip, atomic: locked rows are skipped, so reservers never wait for each
        other and no task is claimed twice. Leases come back in claim order; each has its own
        random token and expires at `now + lease_for`; the attempt counter goes up by one.
        With server_clock, `now` is the database's clock read by the statement (the
        caller's `now` is not used).
        """
        check_limit(limit)
        check_lease_for(lease_for)
        self._live()
        if queues is not None and not queues:
            self._limited_for = None
            return []
        wanted = None if queues is None else list(queues)
        self._limited_for = None
        rows: list[Any] = []
        if not self._has_limits:
            # With server_clock, RESERVE reads the database's clock itself: no estimate.
            asked = float(now) if self._clock is None else 0.0
            server = self._clock is not None
            rows = await self._fetch(
                q.RESERVE, asked, float(lease_for), worker_id, limit, MIN_HEAD, wanted, server
            )
            if not rows:  # nothing due, or a limit is stored (RESERVE then claims nothing)
                self._has_limits = bool(await self._fetchval(q.ANY_LIMITS))
        if self._has_limits:
            now = await self._now(now)
            rows = await self._reserve_limited(worker_id, limit, now, lease_for, wanted)
        rows.sort(key=lambda row: (row["order_key"], row["id"]))
        return [
            Lease(
                record=(record := record_from_row(row)),
                token=row["lease_token"],
                expires_at=float(record.lease_expires_at or 0.0),
            )
            for row in rows
        ]

    async def _reserve_limited(
        self,
        worker_id: str,
        limit: int,
        now: float,
        lease_for: float,
        wanted: list[str] | None,
    ) -> list[Any]:
        """Reserve under the stored limits (ADR 0038): in one transaction, lock the limit rows
        (reserves under limits take turns), count the limited scopes' running tasks, admit
        candidates (locked, SKIP LOCKED) through a Gate, claim them and save the buckets.
        Four to seven round trips (one reads the database's clock for the buckets); atomic.
        Readiness and the lease here follow `now` (the estimate, with server_clock). With no
        limit left, falls back to RESERVE."""
        expires_at = now + lease_for
        max_key = max(order_key(p, now) for p in Priority)

        async def work(conn: Any) -> list[Any]:
            stored = await conn.fetch(self.sql(q.LOCK_LIMITS))
            if not stored:
                self._has_limits = False
                return list(
                    await conn.fetch(
                        self.sql(q.RESERVE),
                        now,
                        float(lease_for),
                        worker_id,
                        limit,
                        MIN_HEAD,
                        wanted,
                        self._clock is not None,
                    )
                )
            # The buckets' clock: the database's, read after the lock (so each reserve's is
            # later than the last one's), unless server_clock is off (a test's fake clock).
            bucket_now = now
            if self._clock is not None:
                bucket_now = float(await conn.fetchval(self.sql(q.SERVER_TIME)))
            limits = [limit_from_row(row) for row in stored]
            buckets = {
                (row["scope"], row["name"]): (row["tokens"], row["stamp"])
                for row in stored
                if row["tokens"] is not None
            }
            capped = [lim for lim in limits if lim.max_concurrency is not None]
            counted = await conn.fetch(
                self.sql(q.COUNT_RUNNING),
                [lim.name for lim in capped if lim.scope is LimitScope.TYPE],
                [lim.name for lim in capped if lim.scope is LimitScope.QUEUE],
            )
            running = {(row["scope"], row["name"]): int(row["n"]) for row in counted}
            gate = Gate(limits, running, buckets, bucket_now)
            chosen: list[str] = []
            seen: list[str] = []
            for _ in range(_LIMITED_ROUNDS):
                want = limit - len(chosen)
                candidates = await conn.fetch(
                    self.sql(q.RESERVE_CANDIDATES),
                    now,
                    want,
                    max_key,
                    wanted,
                    gate.full(LimitScope.TYPE),
                    gate.full(LimitScope.QUEUE),
                    seen,
                )
                refused = False
                for row in candidates:
                    seen.append(row["id"])
                    if gate.admit(row["type"], row["queue"]):
                        chosen.append(row["id"])
                    else:
                        refused = True
                if len(chosen) == limit or len(candidates) < want or not refused:
                    break
            gate.note_held_back()
            self._limited_for = gate.retry_in
            saved = gate.buckets()
            if saved:
                keys = list(saved)
                await conn.execute(
                    self.sql(q.SAVE_BUCKETS),
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [saved[k][0] for k in keys],
                    bucket_now,
                )
            if not chosen:
                return []
            return list(
                await conn.fetch(self.sql(q.CLAIM_IDS), chosen, now, float(expires_at), worker_id)
            )

        return await self._transaction(work)

    async def extend(
        self, leases: Sequence[Lease], lease_for: float, now: float
    ) -> list[LeaseStatus]:
        """Push each held lease to `now + lease_for`; aligned statuses: HELD, CANCEL_REQUESTED
        (a cancel was asked: still extended) or LOST (the token is no longer current).

        One round trip; atomic.
        """
        check_lease_for(lease_for)
        self._live()
        if not leases:
            return []
        pairs = [(lease.task_id, lease.token) for lease in leases]
        chosen, _ = first_of_each(pairs)
        rows = await self._fetch(
            q.EXTEND,
            [pairs[i][0] for i in chosen],
            [pairs[i][1] for i in chosen],
            await self._now(now) + float(lease_for),
        )
        held = {(row["id"], row["lease_token"]): row["cancel_requested"] for row in rows}
        statuses: list[LeaseStatus] = []
        for pair in pairs:
            if pair not in held:
                statuses.append(LeaseStatus.LOST)
            else:
                statuses.append(LeaseStatus.CANCEL_REQUESTED if held[pair] else LeaseStatus.HELD)
        return statuses

    async def record_progress(self, reports: Sequence[ProgressReport], now: float) -> list[bool]:
        """Store each report's progress if its token is current (aligned bools; of two
        reports of one lease in a batch, the later is stored).

        One round trip; atomic; a refused report changes nothing.
        """
        self._live()
        if not reports:
            return []
        rows = await self._fetch(q.PROGRESS, *progress_arrays(reports))
        stored = {(row["id"], row["lease_token"]) for row in rows}
        return [(r.task_id, r.token) in stored for r in reports]

    async def settle(self, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        """Apply a mixed batch of outcomes, each only if its token is current (aligned bools).

        One round trip; atomic. A refused outcome (False) changes nothing; a second outcome
        for the same lease in the batch is refused. A retry, snooze or release of a task with a
        cancel request cancels it (model.records). A task that becomes queued wakes
        waiters on commit (NOTIFY). A success of a task with keep_result 0 deletes it.
        """
        self._live()
        if not outcomes:
            return []
        chosen, is_first = first_of_each((o.task_id, o.token) for o in outcomes)
        batch = [outcomes[i] for i in chosen]
        now = await self._now(now)
        arrays = settle_arrays(batch, now)
        rows = await self._fetch(q.SETTLE, *arrays[:7], now, HEADS, *arrays[7:], False)
        applied = {(row["id"], row["token"]) for row in rows}
        left = [o for o in batch if (o.task_id, o.token) not in applied]
        if left:  # refused, or a task with dependents: settled with their release
            applied |= await self._settle_waited(left, now)
        if applied and self._has_limits:  # a slot may be free: wake reservers (ADR 0038)
            await self._execute(q.WAKE, self.config.channel)
        return [
            first and (o.task_id, o.token) in applied
            for o, first in zip(outcomes, is_first, strict=True)
        ]

    async def _settle_waited(self, outcomes: Sequence[Outcome], now: float) -> set[Pair]:
        """Settle outcomes the fast path left (tasks with dependents, or stale tokens) in one
        transaction that also releases or cancels the dependents of those that ended."""
        arrays = settle_arrays(outcomes, now)

        async def work(conn: Any) -> set[Pair]:
            rows = await conn.fetch(self.sql(q.SETTLE), *arrays[:7], now, HEADS, *arrays[7:], True)
            ended = [
                (row["id"], TaskState(row["state"]))
                for row in rows
                if row["state"] in TERMINAL_STATES
            ]
            await waits.release(conn, self.sql, ended, now)
            return {(row["id"], row["token"]) for row in rows}

        return await self._transaction(work)

    async def requeue_expired(self, now: float, limit: int) -> list[str]:
        """Move up to `limit` running tasks whose lease expired before `now` back to queued
        (or to cancelled, if cancel was requested; to dead, on their last attempt), oldest
        expiry first, each with a history line for the lost attempt; return their ids in that
        order.

        One transaction of two statements (four round trips with BEGIN and COMMIT): the rows
        are locked while their history lines are built here. Atomic; wakes waiters.
        """
        check_limit(limit)
        self._live()

        now = await self._now(now)

        async def work(conn: Any) -> list[str]:
            rows = await conn.fetch(self.sql(q.REQUEUE_SELECT), now, limit)
            if not rows:
                return []
            lines, dead_results = expiry_arrays(rows, now)
            await conn.execute(
                self.sql(q.REQUEUE_APPLY),
                [row["id"] for row in rows],
                [row["lease_token"] for row in rows],
                lines,
                [row["cancel_requested"] for row in rows],
                now,
                HEADS,
                dead_results,
            )
            ended = [
                (row["id"], TaskState.CANCELLED if row["cancel_requested"] else TaskState.DEAD)
                for row, dead in zip(rows, dead_results, strict=True)
                if row["waited"] and (row["cancel_requested"] or dead is not None)
            ]
            await waits.release(conn, self.sql, ended, now)
            return [row["id"] for row in rows]

        return await self._transaction(work)
