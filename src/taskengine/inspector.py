"""Inspector: what the faces (HTTP API, CLI) read and steer besides submitting, over the broker.

The API and the CLI reach the broker only through `App` and the `Inspector` it owns, so a rule
(a batch size, which workers count as alive, what readiness asks) is written once and holds for
every face alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from taskengine.brokers import Page, ReplayResult
from taskengine.brokers.base import CountRow, TaskFilter
from taskengine.model import Progress, WorkerInfo
from taskengine.model.limits import Limit
from taskengine.runtime.status import EngineStatus
from taskengine.telemetry.aggregate import reported_figures
from taskengine.telemetry.cluster import cluster_reports, cluster_workers
from taskengine.telemetry.figures import broker_figures

if TYPE_CHECKING:
    from taskengine.brokers.base import BrokerBackend
    from taskengine.clock import Clock
    from taskengine.metrics import Metrics
    from taskengine.settings import Settings
    from taskengine.telemetry.report import InstanceTelemetry
    from taskengine.telemetry.sampler import Sampler, StatusAt

REPLAY_BATCH = 500  # ids per broker call when many tasks are replayed at once


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

    async def counts(self) -> list[CountRow]:
        """Task counts per (queue, state, priority)."""
        return await self._app.broker.counts()

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
        return await self._app.broker.paused()

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
