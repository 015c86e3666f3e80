"""The client commands' one interface, `Client`, and the in-process one, `DirectClient`.

Client commands talk to a `Client`: `DirectClient` drives an App in this process (`--app
module:attr` or a plain App); `remote.HttpClient` drives a `taskengine serve` over its REST API
(`--api URL`). Each command is written once against the `Client` interface.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from taskengine.cli.loading import CliState, load_app, run
from taskengine.errors import BrokerUnavailable, TaskEngineError
from taskengine.logging import redact_url

if TYPE_CHECKING:
    from taskengine.app import App, TaskRequest
    from taskengine.brokers import CancelResult, Page, ReplayResult, TaskFilter
    from taskengine.model import TaskRecord
    from taskengine.model.limits import Limit
    from taskengine.views import (
        InstanceView,
        LimitView,
        PeriodicView,
        QueueView,
        Submitted,
        TypeView,
        WorkerView,
        WorkflowAction,
        WorkflowView,
    )

T = TypeVar("T")


@contextlib.asynccontextmanager
async def connected(app: App) -> AsyncIterator[App]:
    """Start the app's broker for the body and close it after; unreachable -> BrokerUnavailable."""
    await _start(app)
    try:
        yield app
    finally:
        await app.close()


async def _start(app: App) -> None:
    """Start the app's broker; unreachable -> BrokerUnavailable naming the broker."""
    try:
        await app.start()
    except TaskEngineError:
        await _close_quietly(app)
        raise
    except Exception as exc:  # the driver's own error: say which broker and why, in one line
        await _close_quietly(app)
        where = redact_url(app.settings.broker_url)
        raise BrokerUnavailable(
            f"cannot reach broker {where}: {type(exc).__name__}: {exc}"
        ) from exc


async def _close_quietly(app: App) -> None:
    with contextlib.suppress(Exception):
        await app.close()


class Client(Protocol):
    """What the client commands need: one interface, direct (App) or remote (HTTP API)."""

    def check(self, request: TaskRequest) -> None:
        """Validate a submission before connecting (raise on bad input)."""

    async def start(self) -> None:
        """Connect (raise BrokerUnavailable or a CliError when the target cannot be reached)."""

    async def close(self) -> None:
        """Disconnect."""

    def now(self) -> float:
        """The current time in epoch seconds, as the target sees it."""

    async def submit(self, request: TaskRequest) -> Submitted:
        """Submit one task: its id (the first task's for a repeated idempotency key), as the API
        answers."""

    async def get(self, task_id: str) -> TaskRecord:
        """A task's record; raise TaskNotFound."""

    async def list_tasks(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """A page of tasks, newest first."""

    async def cancel(self, task_id: str) -> CancelResult:
        """Cancel a queued task, or ask a running one's worker to stop it."""

    async def replay(self, task_ids: Sequence[str]) -> list[ReplayResult]:
        """Queue dead or cancelled tasks again; one answer per id, in order."""

    async def workflow(self, workflow_id: str) -> WorkflowView:
        """A workflow's graph; WorkflowNotFound (or its API answer) if it has no task."""

    async def cancel_workflow(self, workflow_id: str) -> WorkflowAction:
        """Cancel every unfinished task of a workflow."""

    async def replay_workflow(self, workflow_id: str) -> WorkflowAction:
        """Replay a workflow's dead and cancelled tasks, parents first."""

    async def workers(self, since: float) -> list[WorkerView]:
        """Workers seen within the last `since` seconds, as the API shows them."""

    async def queues(self) -> list[QueueView]:
        """Every queue with its counts, as the API shows them (GET /api/queues)."""

    async def metrics(self) -> dict[str, Any]:
        """Figures of the system: the server's snapshot, or what the broker alone can tell."""

    async def instances(self) -> list[InstanceView]:
        """Every live engine instance, as the API shows them (GET /api/instances)."""

    async def control(self, instance: str, command: str, size: int | None) -> None:
        """Send a remote-control command (drain, resume, resize, shutdown) to an instance."""

    async def purge_queue(self, name: str) -> int:
        """Delete every queued task of a queue; how many."""

    async def bulk(
        self, action: str, ids: Sequence[str] | None, task_filter: TaskFilter | None
    ) -> int:
        """Cancel, replay or delete tasks by ids or by filter; how many changed."""

    async def scheduled(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """Queued tasks due later, newest first."""

    async def retrying(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """Queued tasks that already ran an attempt, newest first."""

    async def task_types(self) -> list[TypeView]:
        """Every task type of a live instance or of this app (GET /api/types)."""

    async def periodic(self) -> list[PeriodicView]:
        """The periodic tasks (GET /api/periodic)."""

    async def set_periodic(self, name: str, enabled: bool) -> bool:
        """Enable or disable a periodic task everywhere; False if there is none by that name."""

    async def pause(self, names: Sequence[str]) -> None:
        """Pause these queues."""

    async def resume(self, names: Sequence[str]) -> None:
        """Resume these queues."""

    async def limits(self) -> list[LimitView]:
        """The stored limits (GET /api/limits)."""

    async def set_limit(self, limit: Limit) -> LimitView:
        """Replace one scope's limits; an empty limit removes them."""


class DirectClient:
    """The Client over an App: opens the broker in this process."""

    def __init__(self, app: App) -> None:
        self.app = app

    def check(self, request: TaskRequest) -> None:
        """Refuse unknown types (naming the known ones) and invalid fields, before any I/O."""
        self.app.check(request)

    async def start(self) -> None:
        """Start the app's broker; unreachable -> BrokerUnavailable."""
        await _start(self.app)

    async def close(self) -> None:
        """Close the app's broker."""
        await self.app.close()

    def now(self) -> float:
        """The app's clock."""
        return self.app.clock.now()

    async def submit(self, request: TaskRequest) -> Submitted:
        """Submit through the app."""
        from taskengine.views import submitted

        result = (await self.app.enqueue_tasks([self.app.build(request)]))[0]
        return submitted(result.id, result.created)

    async def get(self, task_id: str) -> TaskRecord:
        """The record from the broker."""
        return await self.app.get(task_id)

    async def list_tasks(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """A page through the app's inspector."""
        return await self.app.inspector.list_tasks(task_filter, limit, cursor)

    async def cancel(self, task_id: str) -> CancelResult:
        """Cancel through the app."""
        return await self.app.cancel(task_id)

    async def replay(self, task_ids: Sequence[str]) -> list[ReplayResult]:
        """Replay through the app's inspector (in broker batches)."""
        return await self.app.inspector.replay(task_ids)

    async def workflow(self, workflow_id: str) -> WorkflowView:
        """The workflow's graph through the app."""
        from taskengine.views import workflow_view
        from taskengine.workflows import workflow_state

        records = await self.app.workflow(workflow_id)
        return workflow_view(workflow_id, records, workflow_state(records))

    async def cancel_workflow(self, workflow_id: str) -> WorkflowAction:
        """Cancel every unfinished task of the workflow through the app."""
        from taskengine.views import WorkflowAction

        answers = await self.app.cancel_workflow(workflow_id)
        return WorkflowAction(workflow_id, {k: str(v) for k, v in answers.items()})

    async def replay_workflow(self, workflow_id: str) -> WorkflowAction:
        """Replay the workflow's dead and cancelled tasks, parents first, through the app."""
        from taskengine.views import WorkflowAction

        answers = await self.app.replay_workflow(workflow_id)
        return WorkflowAction(workflow_id, {k: str(v) for k, v in answers.items()})

    async def workers(self, since: float) -> list[WorkerView]:
        """The worker registry."""
        from taskengine.views import worker_view

        return [worker_view(info) for info in await self.app.inspector.workers(since)]

    async def queues(self) -> list[QueueView]:
        """Counts, paused queues and the rates the instances report, as the API's views."""
        return await self.app.inspector.queues(self.app.clock.now())

    async def metrics(self) -> dict[str, Any]:
        """The figures of /api/metrics that the broker alone holds, by the same names."""
        return {"source": "broker", **await self.app.inspector.figures()}

    async def instances(self) -> list[InstanceView]:
        """The live workers grouped by instance, with each one's version and RSS as reported."""
        from taskengine.views import instance_views

        now = self.now()
        inspector = self.app.inspector
        return instance_views(await inspector.live_workers(now), await inspector.instances(now))

    async def control(self, instance: str, command: str, size: int | None) -> None:
        """Send the command through the app's inspector."""
        from taskengine.brokers import ControlCommand

        await self.app.inspector.control(instance, ControlCommand(command), size=size)

    async def purge_queue(self, name: str) -> int:
        """Purge through the app's inspector (in broker batches)."""
        return await self.app.inspector.purge_queue(name)

    async def bulk(
        self, action: str, ids: Sequence[str] | None, task_filter: TaskFilter | None
    ) -> int:
        """A bulk action through the app's inspector (in broker batches)."""
        from taskengine.inspector import BULK_ACTIONS

        chosen = next(a for a in BULK_ACTIONS if a == action)
        return await self.app.inspector.bulk(chosen, ids=ids, task_filter=task_filter)

    async def scheduled(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """Through the app's inspector."""
        return await self.app.inspector.scheduled(task_filter, limit, cursor)

    async def retrying(self, task_filter: TaskFilter, limit: int, cursor: str | None) -> Page:
        """Through the app's inspector."""
        return await self.app.inspector.retrying(task_filter, limit, cursor)

    async def task_types(self) -> list[TypeView]:
        """Through the app's inspector."""
        return await self.app.inspector.task_types(self.now())

    async def periodic(self) -> list[PeriodicView]:
        """Through the app's inspector."""
        return await self.app.inspector.periodic(self.now())

    async def set_periodic(self, name: str, enabled: bool) -> bool:
        """Through the app's inspector."""
        if name not in {view.name for view in await self.periodic()}:
            return False
        await self.app.inspector.set_periodic(name, enabled=enabled)
        return True

    async def pause(self, names: Sequence[str]) -> None:
        """Pause through the app's inspector."""
        await self.app.inspector.pause(names)

    async def resume(self, names: Sequence[str]) -> None:
        """Resume through the app's inspector."""
        await self.app.inspector.resume(names)

    async def limits(self) -> list[LimitView]:
        """The stored limits through the app's inspector."""
        from taskengine.views import limit_view

        return [limit_view(limit) for limit in await self.app.inspector.limits()]

    async def set_limit(self, limit: Limit) -> LimitView:
        """Store one limit through the app's inspector."""
        from taskengine.views import limit_view

        await self.app.inspector.set_limits([limit])
        return limit_view(limit)


def open_client(state: CliState) -> Client:
    """The Client for this invocation: HTTP with `--api`, the broker otherwise (unconnected)."""
    if state.api is not None:
        from taskengine.cli.remote import HttpClient

        return HttpClient(state.api, state.token)
    return DirectClient(load_app(state))


def with_client(
    state: CliState,
    body: Callable[[Client], Coroutine[Any, Any, T]],
    *,
    client: Client | None = None,
) -> T:
    """Open the client (unless given), connect it, run `body(client)` and close it again."""
    found = open_client(state) if client is None else client

    async def main() -> T:
        await found.start()
        try:
            return await body(found)
        finally:
            await found.close()

    return run(main())
