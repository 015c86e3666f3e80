"""The JSON views of tasks, results, workers and queues: one shape for the REST API and the CLI.

Times are aware UTC datetimes (ISO 8601 with `Z` in JSON), priorities their names. The API
(api/schemas.py re-exports these) and the CLI's `--json` both build them here, so a task prints
the same whichever way it is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from taskengine.brokers.base import CountRow, Page
from taskengine.model import AttemptRecord, Priority, Progress, TaskRecord, TaskResult
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.progress import fraction
from taskengine.model.worker import WorkerInfo

if TYPE_CHECKING:
    from taskengine.telemetry.report import InstanceTelemetry


class Submitted(msgspec.Struct):
    """What a submission created (or found, for a repeated idempotency key)."""

    id: str
    created: bool
    location: str


class ResultView(msgspec.Struct):
    """The spec's TaskResult."""

    task_id: str
    status: str
    data: Any
    duration: float
    worker_id: str | None
    completed_at: datetime
    error: str | None
    attempt: int


class AttemptView(msgspec.Struct):
    """One line of a task's attempt history."""

    attempt: int
    status: str
    worker_id: str | None
    finished_at: datetime
    duration: float
    error: str | None
    # The failed run's formatted traceback (redacted, at most 8 KiB, its tail kept); null for
    # other attempts, for a failure without one (timeout, lease expired), and in task lists.
    traceback: str | None = None


class ProgressView(msgspec.Struct):
    """The last progress the task's handler reported (written at most once a second)."""

    done: int
    total: int  # 0: unknown
    fraction: float | None  # done / total within [0, 1]; null when the total is unknown
    note: str | None
    at: datetime
    attempt: int  # the attempt that reported it


class TaskView(msgspec.Struct):
    """A task with its state, result and history."""

    id: str
    type: str
    payload: Any
    priority: str
    queue: str
    state: str
    attempt: int
    max_attempts: int
    timeout: float
    created_at: datetime
    run_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    cancel_requested: bool
    idempotency_key: str | None
    result: ResultView | None
    history: list[AttemptView]
    depends_on: list[str] = msgspec.field(default_factory=list)
    on_parent_failure: str = "cancel"
    waiting: int = 0  # parents not yet settled, while blocked
    workflow: str | None = None
    # The last progress reported (kept after the task settles); null if it never reported.
    progress: ProgressView | None = None


class WorkflowNode(msgspec.Struct):
    """One task of a workflow, as its graph shows it."""

    id: str
    type: str
    state: str
    depends_on: list[str]
    on_parent_failure: str
    waiting: int
    attempt: int
    error: str | None


class WorkflowView(msgspec.Struct):
    """A workflow: one word for its state, its tasks parents first, and its edges."""

    id: str
    state: str
    counts: dict[str, int]
    nodes: list[WorkflowNode]
    edges: list[list[str]]  # [parent id, child id]


class WorkflowSubmitted(msgspec.Struct):
    """What a workflow submission created: its id and each node's task id by name."""

    id: str
    tasks: dict[str, str]
    location: str


class WorkflowAction(msgspec.Struct):
    """What cancelling or replaying a workflow did to each of its tasks."""

    id: str
    tasks: dict[str, str]


class TaskPage(msgspec.Struct):
    """A page of tasks, newest first; pass next_cursor as `cursor` for the next page."""

    items: list[TaskView]
    next_cursor: str | None


class CancelView(msgspec.Struct):
    """What a cancel did: cancelled at once, or requested from the running worker."""

    id: str
    result: str


class WorkerView(msgspec.Struct):
    """A worker of any instance, as its last heartbeat reported it."""

    id: str
    instance: str
    host: str
    pid: int
    state: str
    current_task: str | None
    processed: int
    busy_ratio: float
    started_at: datetime
    last_heartbeat: datetime


class InstanceView(msgspec.Struct):
    """One engine process (instance) of the cluster, from its workers' last heartbeats; its
    version and resident memory from its last telemetry report (None until one is in)."""

    instance: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime
    workers: int
    busy: int
    processed: int
    draining: bool
    types: list[str]
    version: str | None = None
    rss_bytes: int | None = None


class ControlView(msgspec.Struct):
    """A remote-control command accepted for an instance (ADR 0036)."""

    instance: str
    command: str
    size: int | None = None


class TypeView(msgspec.Struct):
    """A task type registered on a live instance, or on this server (`submittable`)."""

    name: str
    executor: str
    timeout: float
    max_attempts: int
    queue: str
    priority: str
    instances: list[str]  # the live instances that run it
    submittable: bool  # this server's registry has it: it accepts submissions of it


class PeriodicView(msgspec.Struct):
    """A periodic task: its schedule, who submits it, and whether it is enabled."""

    name: str
    cron: str
    type: str
    enabled: bool
    next_slot: float | None  # epoch seconds; None while disabled
    last_fired: float | None  # the last slot the leader submitted (as of its heartbeat)
    leader: str | None  # the instance holding the scheduler, if one is live


class QueueView(msgspec.Struct):
    """One queue: counts by state and priority, whether it is paused, and its rate (runs that
    ended, succeeded, retried or dead, per second over the last minute, every instance)."""

    name: str
    paused: bool
    states: dict[str, int]
    queued_by_priority: dict[str, int]
    oldest_queued_at: datetime | None
    rate_per_second: float = 0.0


def submitted(task_id: str, created: bool) -> Submitted:
    """The answer to a submission of one task."""
    return Submitted(task_id, created, f"/api/tasks/{task_id}")


def when(seconds: float) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


def maybe_when(seconds: float | None) -> datetime | None:
    """Like `when`, passing None through."""
    return None if seconds is None else when(seconds)


def result_view(result: TaskResult) -> ResultView:
    """The API view of a TaskResult."""
    return ResultView(
        task_id=result.task_id,
        status=str(result.status),
        data=result.data,
        duration=result.duration,
        worker_id=result.worker_id,
        completed_at=when(result.completed_at),
        error=result.error,
        attempt=result.attempt,
    )


def attempt_view(line: AttemptRecord, traceback: bool = True) -> AttemptView:
    """The API view of one history line (without its traceback unless `traceback`)."""
    return AttemptView(
        attempt=line.attempt,
        status=str(line.status),
        worker_id=line.worker_id,
        finished_at=when(line.finished_at),
        duration=line.duration,
        error=line.error,
        traceback=line.traceback if traceback else None,
    )


def progress_view(progress: Progress) -> ProgressView:
    """The API view of a task's last progress report."""
    return ProgressView(
        done=progress.done,
        total=progress.total,
        fraction=fraction(progress),
        note=progress.note,
        at=when(progress.at),
        attempt=progress.attempt,
    )


def task_view(record: TaskRecord, tracebacks: bool = True) -> TaskView:
    """The API view of a task record; a list leaves the tracebacks out (`tracebacks`)."""
    return TaskView(
        id=record.id,
        type=record.type,
        payload=record.payload,
        priority=Priority(record.priority).name,
        queue=record.queue,
        state=str(record.state),
        attempt=record.attempt,
        max_attempts=record.max_attempts,
        timeout=record.timeout,
        created_at=when(record.created_at),
        run_at=when(record.run_at),
        updated_at=when(record.updated_at or record.created_at),
        started_at=maybe_when(record.started_at),
        finished_at=maybe_when(record.finished_at),
        worker_id=record.worker_id,
        cancel_requested=record.cancel_requested,
        idempotency_key=record.idempotency_key,
        result=result_view(record.result) if record.result is not None else None,
        history=[attempt_view(line, tracebacks) for line in record.history],
        progress=None if record.progress is None else progress_view(record.progress),
        depends_on=list(record.depends_on),
        on_parent_failure=record.on_parent_failure,
        waiting=record.waiting,
        workflow=record.workflow,
    )


def workflow_view(workflow_id: str, records: list[TaskRecord], state: str) -> WorkflowView:
    """The view of a workflow's records (parents first) in the one-word `state`."""
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.state)] = counts.get(str(record.state), 0) + 1
    return WorkflowView(
        id=workflow_id,
        state=state,
        counts=counts,
        nodes=[
            WorkflowNode(
                id=r.id,
                type=r.type,
                state=str(r.state),
                depends_on=list(r.depends_on),
                on_parent_failure=r.on_parent_failure,
                waiting=r.waiting,
                attempt=r.attempt,
                error=None if r.result is None else r.result.error,
            )
            for r in records
        ],
        edges=[[parent, r.id] for r in records for parent in r.depends_on],
    )


def worker_view(info: WorkerInfo) -> WorkerView:
    """The API view of a registry entry."""
    alive = max(info.last_seen - info.started_at, 1e-9)
    return WorkerView(
        id=info.id,
        instance=info.instance,
        host=info.host,
        pid=info.pid,
        state=info.state,
        current_task=info.current_task,
        processed=info.processed,
        busy_ratio=round(min(info.busy_seconds / alive, 1.0), 4),
        started_at=when(info.started_at),
        last_heartbeat=when(info.last_seen),
    )


def instance_views(
    infos: list[WorkerInfo], reports: Sequence[InstanceTelemetry] = ()
) -> list[InstanceView]:
    """Group registry entries by instance, one view each, by instance id, joined with each
    instance's telemetry report for its version and RSS (None where no report is in yet)."""
    by_instance = {report.instance: report for report in reports}
    grouped: dict[str, list[WorkerInfo]] = {}
    for info in infos:
        grouped.setdefault(info.instance, []).append(info)
    views = []
    for instance, members in sorted(grouped.items()):
        first = members[0]
        types = sorted({name for info in members for name in info.types})
        report = by_instance.get(instance)
        views.append(
            InstanceView(
                instance=instance,
                host=first.host,
                pid=first.pid,
                started_at=when(min(info.started_at for info in members)),
                last_heartbeat=when(max(info.last_seen for info in members)),
                workers=sum(1 for info in members if info.state != "stopping"),  # not retiring
                busy=sum(1 for info in members if info.current_task is not None),
                processed=sum(info.processed for info in members),
                draining=any(info.draining for info in members),
                types=types,
                version=None if report is None else report.version,
                # a report sent before the first sample has no figure: 0 is "not known yet"
                rss_bytes=None if report is None else report.rss_bytes or None,
            )
        )
    return views


def queue_views(
    rows: list[CountRow], paused: set[str], rates: Mapping[str, float] | None = None
) -> list[QueueView]:
    """Fold count rows into one view per queue, with its rate from `rates` (paused queues and
    queues with a rate but no tasks left included)."""
    views: dict[str, QueueView] = {
        name: QueueView(name, True, {}, {}, None) for name in sorted(paused)
    }
    for name, rate in (rates or {}).items():
        view = views.setdefault(name, QueueView(name, name in paused, {}, {}, None))
        view.rate_per_second = round(rate, 4)
    for row in rows:
        view = views.setdefault(row.queue, QueueView(row.queue, row.queue in paused, {}, {}, None))
        view.states[str(row.state)] = view.states.get(str(row.state), 0) + row.count
        if str(row.state) == "queued":
            name = Priority(row.priority).name
            view.queued_by_priority[name] = view.queued_by_priority.get(name, 0) + row.count
            if row.oldest_created_at is None:
                continue
            oldest = when(row.oldest_created_at)
            if view.oldest_queued_at is None or oldest < view.oldest_queued_at:
                view.oldest_queued_at = oldest
    return sorted(views.values(), key=lambda v: v.name)


def task_page(page: Page) -> TaskPage:
    """The API view of a page of task records (without tracebacks: up to 8 KiB per attempt)."""
    return TaskPage([task_view(record, False) for record in page.items], page.next_cursor)


class LimitView(msgspec.Struct, kw_only=True):
    """One stored limit: rate in tasks per second, burst the bucket's size."""

    scope: Literal["type", "queue"]
    name: str
    max_concurrency: int | None
    rate: float | None
    burst: int | None


def limit_view(limit: Limit) -> LimitView:
    """The JSON view of a stored limit (burst as reserve uses it)."""
    return LimitView(
        scope="type" if limit.scope is LimitScope.TYPE else "queue",
        name=limit.name,
        max_concurrency=limit.max_concurrency,
        rate=limit.rate,
        burst=None if limit.rate is None else int(limit.capacity),
    )
