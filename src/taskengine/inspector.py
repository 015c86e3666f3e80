"""Inspector: what the faces (HTTP API, CLI) read and steer besides submitting, over the broker.

The API and the CLI reach the broker only through `App` and the `Inspector` it owns, so a rule
(a batch size, which workers count as alive, what readiness asks) is written once and holds for
every face alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from taskengine.brokers import CancelResult, Page, ReplayResult
from taskengine.brokers.base import PERIODIC_OFF, Control, ControlCommand, CountRow, TaskFilter
from taskengine.errors import ValidationError
from taskengine.model import Progress, TaskRecord, TaskState, WorkerInfo
from taskengine.model.limits import Limit
from taskengine.model.state import REPLAYABLE_STATES, TERMINAL_STATES
from taskengine.model.task import validate_name
from taskengine.model.worker import PeriodicInfo, TypeInfo
from taskengine.policy.cron import CronEntry, next_slot
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.aggregate import others, queue_rates, reported_figures
from taskengine.telemetry.cluster import cluster_reports, cluster_workers
from taskengine.telemetry.figures import broker_figures
from taskengine.views import PeriodicView, QueueView, TypeView, queue_views

if TYPE_CHECKING:
    from taskengine.brokers.base import BrokerBackend
    from taskengine.clock import Clock
    from taskengine.metrics import Metrics
    from taskengine.registry import Registry
    from taskengine.settings import Settings
    from taskengine.telemetry.report import InstanceTelemetry
    from taskengine.telemetry.sampler import Sampler, StatusAt

REPLAY_BATCH = 500  # ids per broker call when many tasks are replayed at once
MAX_POOL_SIZE = 10_000  # the largest pool a remote resize may ask for
BULK_BATCH = 500  # ids per broker call (and tasks per listed page) of a bulk action
SCAN_PAGES = 10  # pages of queued tasks one scheduled/retrying answer examines at most

BulkAction = Literal["cancel", "replay", "delete"]
BULK_ACTIONS: tuple[BulkAction, ...] = ("cancel", "replay", "delete")
# The states each bulk action can change: a filter is narrowed to these.
ACTION_STATES: dict[str, frozenset[TaskState]] = {
    "cancel": frozenset({TaskState.BLOCKED, TaskState.QUEUED, TaskState.RUNNING}),
    "replay": REPLAYABLE_STATES,
    "delete": TERMINAL_STATES,
}


class Inspected(Protocol):
    """What the inspector reads of its App (`taskengine.app.App` is one)."""

    @property
    def broker(self) -> BrokerBackend:
        """The broker, built on first use."""

    @property
    def clock(self) -> Clock:
        """The source of now."""

    @property
    def metrics(self) -> Metrics:
        """The collector the pool feeds."""

    @property
    def settings(self) -> Settings:
        """The current settings."""

    @property
    def registry(self) -> Registry:
        """The task types this app runs and accepts."""

    @property
    def periodic_tasks(self) -> list[CronEntry]:
        """The periodic tasks this app declares."""


class Inspector:
    """Tasks, queues and workers as the broker holds them; owned by an App (`App.inspector`)."""

    def __init__(self, app: Inspected) -> None:
        self._app = app
        self._sampler: Sampler | None = None

    async def list_tasks(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """A page of matching tasks, newest first, after `cursor` (one broker call)."""
        return await self._app.broker.list_tasks(task_filter, limit, cursor)

    async def replay(self, task_ids: Sequence[str]) -> list[ReplayResult]:
        """Queue dead or cancelled tasks again; one answer per id, in order (in broker batches)."""
        answers: list[ReplayResult] = []
        now = self._app.clock.now()
        for start in range(0, len(task_ids), REPLAY_BATCH):
            batch = list(task_ids[start : start + REPLAY_BATCH])
            answers += await self._app.broker.replay(batch, now)
        return answers

    async def bulk(
        self,
        action: BulkAction,
        *,
        ids: Sequence[str] | None = None,
        task_filter: TaskFilter | None = None,
        batch: int = BULK_BATCH,
    ) -> int:
        """Cancel, replay or delete the tasks named by `ids`, or every task matching
        `task_filter` (page by page); return how many it changed. Each broker call takes at
        most `batch` ids, so no call is unbounded however many tasks match."""
        if action not in ACTION_STATES:
            raise ValidationError(f"action must be one of {', '.join(BULK_ACTIONS)}: {action!r}")
        if (ids is None) == (task_filter is None):
            raise ValidationError("give ids or a filter (not both)")
        if ids is not None:
            touched = 0
            for start in range(0, len(ids), batch):
                touched += await self._apply(action, list(ids[start : start + batch]))
            return touched
        assert task_filter is not None
        states = ACTION_STATES[action]
        if task_filter.states is not None:
            states = task_filter.states & states
        if not states:
            return 0  # the filter names only states this action cannot change
        narrowed = msgspec.structs.replace(task_filter, states=states)
        return await self._each_page(narrowed, batch, lambda page: self._apply(action, page))

    async def purge_queue(self, queue: str, *, batch: int = BULK_BATCH) -> int:
        """Delete every queued task of `queue` (cancelled, then deleted, a batch at a time);
        return how many. Running tasks are left alone."""
        validate_name("queue", queue)
        queued = TaskFilter(states=frozenset({TaskState.QUEUED}), queues=frozenset({queue}))

        async def purge(page: list[str]) -> int:
            now = self._app.clock.now()
            answers = await self._app.broker.cancel(page, now)
            cancelled = [
                i for i, a in zip(page, answers, strict=True) if a is CancelResult.CANCELLED
            ]
            return sum(await self._app.broker.delete(cancelled)) if cancelled else 0

        return await self._each_page(queued, batch, purge)

    async def scheduled(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """Queued tasks due later (a future `run_at`), newest first, keyset-paged."""
        now = self._app.clock.now()
        return await self._queued_where(task_filter, limit, cursor, lambda r: r.run_at > now)

    async def retrying(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """Queued tasks that already ran an attempt (a retry, or a lease that expired)."""
        return await self._queued_where(task_filter, limit, cursor, lambda r: r.attempt > 0)

    async def _queued_where(
        self,
        task_filter: TaskFilter,
        limit: int,
        cursor: str | None,
        wanted: Callable[[TaskRecord], bool],
    ) -> Page:
        """Queued tasks matching `wanted`: at most SCAN_PAGES pages of `limit` examined, so an
        answer may hold fewer than `limit` with a cursor to go on from."""
        queued = msgspec.structs.replace(task_filter, states=frozenset({TaskState.QUEUED}))
        found: list[TaskRecord] = []
        for _ in range(SCAN_PAGES):
            page = await self._app.broker.list_tasks(queued, limit, cursor)
            for record in page.items:
                if wanted(record):
                    found.append(record)
                    if len(found) == limit:
                        more = record is not page.items[-1] or page.next_cursor is not None
                        return Page(found, record.id if more else None)
            cursor = page.next_cursor
            if cursor is None:
                break
        return Page(found, cursor)

    async def _each_page(
        self, task_filter: TaskFilter, batch: int, act: Callable[[list[str]], Any]
    ) -> int:
        """Apply `act` to the ids of every page of matching tasks; sum what it returns."""
        touched = 0
        cursor: str | None = None
        while True:
            page = await self._app.broker.list_tasks(task_filter, batch, cursor)
            if page.items:
                touched += await act([record.id for record in page.items])
            if page.next_cursor is None:
                return touched
            cursor = page.next_cursor

    async def _apply(self, action: str, ids: list[str]) -> int:
        """One broker call of `action` on `ids`; how many it changed."""
        broker = self._app.broker
        if action == "cancel":
            answers = await broker.cancel(ids, self._app.clock.now())
            return sum(a in (CancelResult.CANCELLED, CancelResult.REQUESTED) for a in answers)
        if action == "replay":
            replayed = await broker.replay(ids, self._app.clock.now())
            return sum(a is ReplayResult.REPLAYED for a in replayed)
        return sum(await broker.delete(ids))

    async def counts(self) -> list[CountRow]:
        """Task counts per (queue, state, priority)."""
        return await self._app.broker.counts()

    async def queues(self, now: float, own: str | None = None) -> list[QueueView]:
        """Every queue's counts, paused flag and rate (three broker calls): the rate is this
        process's (its sampler's, if it samples) plus each other live instance's report, `own`
        being this process's instance, whose report its live figures replace."""
        broker = self._app.broker
        rows, paused, reports = await asyncio.gather(
            broker.counts(), self.paused(), self.instances(now)
        )
        local = self._sampler.rates(now) if self._sampler is not None else {}
        return queue_views(rows, paused, queue_rates(local, others(reports, own)))

    async def figures(self) -> dict[str, Any]:
        """The figures of the JSON metrics that the broker alone holds: counts, and the
        cluster's counters and instances as their reports say (two broker calls)."""
        now = self._app.clock.now()
        return {
            **broker_figures(await self.counts()),
            **reported_figures(await self.instances(now), now),
        }

    async def paused(self) -> set[str]:
        """The paused queues' names."""
        return {name for name in await self._app.broker.paused() if not name.startswith("@")}

    async def task_types(self, now: float) -> list[TypeView]:
        """Every task type registered on a live instance or on this app, by name."""
        found: dict[str, tuple[TypeInfo, list[str]]] = {}
        for info in await self.live_workers(now):
            for spec in info.type_info:
                found.setdefault(spec.name, (spec, []))[1].append(info.instance)
        registry = self._app.registry
        for name in registry.names():
            if name not in found:
                spec_ = registry.get(name)
                local = TypeInfo(
                    name=name,
                    executor=spec_.executor,
                    timeout=spec_.timeout,
                    max_attempts=spec_.max_attempts,
                    queue=spec_.queue,
                    priority=spec_.priority.name,
                )
                found[name] = (local, [])
        mine = set(registry.names())
        return [
            TypeView(
                name=name,
                executor=spec.executor,
                timeout=spec.timeout,
                max_attempts=spec.max_attempts,
                queue=spec.queue,
                priority=spec.priority,
                instances=sorted(set(instances)),
                submittable=name in mine,
            )
            for name, (spec, instances) in sorted(found.items())
        ]

    async def periodic(self, now: float) -> list[PeriodicView]:
        """The periodic tasks: as the scheduler's live leader reports them, else this app's."""
        leader: str | None = None
        reported: tuple[PeriodicInfo, ...] = ()
        for info in await self.live_workers(now):
            if info.periodic is not None:
                leader, reported = info.instance, info.periodic
        entries = {p.name: p for p in reported}
        for entry in self._app.periodic_tasks:
            entries.setdefault(
                entry.name, PeriodicInfo(name=entry.name, cron=entry.cron, type=entry.type)
            )
        switches = await self._app.broker.paused()
        views = []
        for name, entry_info in sorted(entries.items()):
            enabled = PERIODIC_OFF + name not in switches
            views.append(
                PeriodicView(
                    name=name,
                    cron=entry_info.cron,
                    type=entry_info.type,
                    enabled=enabled,
                    next_slot=next_slot(entry_info.cron, now) if enabled else None,
                    last_fired=entry_info.last_fired,
                    leader=leader,
                )
            )
        return views

    async def set_periodic(self, name: str, *, enabled: bool) -> None:
        """Enable or disable a periodic task on every instance (stored in the broker)."""
        known = {view.name for view in await self.periodic(self._app.clock.now())}
        if name not in known:
            raise ValidationError(
                f"no periodic task {name!r} (known: {', '.join(sorted(known)) or 'none'})"
            )
        switch = [PERIODIC_OFF + name]
        await (self._app.broker.resume(switch) if enabled else self._app.broker.pause(switch))

    async def limits(self) -> list[Limit]:
        """The limits stored in the broker, by (scope, name) (ADR 0038)."""
        return await self._app.broker.limits()

    async def set_limits(self, limits: Sequence[Limit]) -> None:
        """Change limits at run time, for every instance (an empty limit removes its scope's);
        an engine started later stores the limits declared in its code again."""
        await self._app.broker.set_limits(list(limits))

    async def pause(self, names: Sequence[str]) -> None:
        """Stop workers everywhere from taking tasks of these queues."""
        await self._app.broker.pause(list(names))

    async def resume(self, names: Sequence[str]) -> None:
        """Let workers take tasks of these queues again."""
        await self._app.broker.resume(list(names))

    async def control(
        self, instance: str, command: ControlCommand, *, size: int | None = None
    ) -> None:
        """Send one remote-control command to `instance` through the broker (ADR 0036); its
        control watch applies it within `cancel_poll_every`."""
        check_control(command, size)
        if not isinstance(instance, str) or not instance or len(instance) > 200:
            raise ValidationError(f"instance must be a non-empty id, got {instance!r}")
        control = Control(command=command, sent_at=self._app.clock.now(), size=size)
        await self._app.broker.send_control(instance, [control])

    async def workers(self, since: float) -> list[WorkerInfo]:
        """Registered workers seen within the last `since` seconds, by id."""
        return await self._app.broker.workers(self._app.clock.now() - since)

    async def live_workers(self, now: float, local: EngineStatus | None = None) -> list[WorkerInfo]:
        """The workers of every instance seen in the last three heartbeats; with `local`, this
        process's own as that status shows them."""
        return await cluster_workers(
            self._app.broker, self._app.settings.heartbeat_every, now, local
        )

    async def progress(self, task_ids: Sequence[str]) -> dict[str, Progress]:
        """The last progress of each of these tasks that reported any (one broker read)."""
        if not task_ids:
            return {}
        records = await self._app.broker.get(list(dict.fromkeys(task_ids)))
        return {r.id: r.progress for r in records if r is not None and r.progress is not None}

    def sampler(self, status: StatusAt, history_path: Path | None = None) -> Sampler:
        """This process's one once-a-second sampler of the app's metrics (built on first use).

        With `history_path` it is the live feed's: it samples the broker counts too, saves
        its history there and the feed drives it; without, the engine's publisher's.
        """
        from taskengine.telemetry.history import BUSY_KEPT, History
        from taskengine.telemetry.sampler import Sampler  # psutil: only when sampling

        sampler = self._sampler
        if sampler is None:
            sampler = self._sampler = Sampler(
                self._app.metrics,
                self._app.broker,
                self._app.clock,
                status=status,
                history=History(BUSY_KEPT),  # a worker reports its last seconds only
                with_counts=False,
            )
        if history_path is not None and not sampler.driven_by_feed:
            hour = History()  # the feed's charts show up to an hour per second
            for point in sampler.history.points:
                hour.add(point)
            sampler.history = hour
            sampler.history_path = history_path
            sampler.with_counts = sampler.driven_by_feed = True
        return sampler

    async def instances(self, now: float) -> list[InstanceTelemetry]:
        """The telemetry every live engine process published, by instance (one broker call);
        a report this build cannot read is left out."""
        return await cluster_reports(self._app.broker, now)


def check_control(command: ControlCommand, size: int | None) -> None:
    """Raise ValidationError unless `size` is given exactly for a resize, within bounds."""
    if command is ControlCommand.RESIZE:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_POOL_SIZE:
            raise ValidationError(f"resize needs a size from 1 to {MAX_POOL_SIZE}, got {size!r}")
    elif size is not None:
        raise ValidationError(f"{command.value} takes no size")
