"""The API's request and response shapes (version 1); the response views live in views.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from taskengine.api.times import parse_date_time
from taskengine.errors import ValidationError
from taskengine.model.deps import MAX_PARENTS
from taskengine.model.ids import TASK_ID_PATTERN
from taskengine.model.task import (
    LATEST_RUN_AT,
    MAX_ATTEMPTS_LIMIT,
    MAX_DELAY,
    MAX_KEEP_RESULT,
    MAX_TIMEOUT,
)
from taskengine.views import (  # the response views, shared with the CLI's --json (re-exported)
    AttemptView,
    CancelView,
    ControlView,
    InstanceView,
    LimitView,
    PeriodicView,
    QueueView,
    ResultView,
    Submitted,
    TaskPage,
    TaskView,
    TypeView,
    WorkerView,
    WorkflowAction,
    WorkflowNode,
    WorkflowSubmitted,
    WorkflowView,
    attempt_view,
    instance_views,
    limit_view,
    queue_views,
    result_view,
    task_view,
    when,
    worker_view,
)

__all__ = [
    "API_VERSION",
    "MAX_BATCH",
    "AttemptView",
    "Attempts",
    "BulkAnswer",
    "BulkFilter",
    "BulkRequest",
    "CancelView",
    "ControlRequest",
    "ControlView",
    "Delay",
    "ErrorDetail",
    "ErrorView",
    "HealthView",
    "InstanceView",
    "Key",
    "LimitBody",
    "LimitView",
    "Name",
    "PeriodicToggled",
    "PeriodicView",
    "PriorityName",
    "PurgeAnswer",
    "PurgeRequest",
    "QueueView",
    "ResultView",
    "Seconds",
    "SubmitBatch",
    "SubmitTask",
    "SubmitWorkflow",
    "Submitted",
    "SubmittedBatch",
    "TaskPage",
    "TaskView",
    "TypeView",
    "WorkerView",
    "WorkflowAction",
    "WorkflowNode",
    "WorkflowStep",
    "WorkflowSubmitted",
    "WorkflowView",
    "attempt_view",
    "instance_views",
    "limit_view",
    "queue_views",
    "result_view",
    "task_view",
    "when",
    "worker_view",
]

API_VERSION = "1"
PriorityName = Literal["HIGH", "NORMAL", "LOW", "high", "normal", "low"]
Name = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=MAX_DELAY)]
DateTime = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
EpochSeconds = Annotated[float, msgspec.Meta(ge=0, le=LATEST_RUN_AT)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS_LIMIT)]
# no NUL: PostgreSQL text cannot hold one and SQLite's JSON functions cut a string at one
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
Retention = Annotated[float, msgspec.Meta(ge=0, le=MAX_KEEP_RESULT)]
MAX_BATCH = 1000
TaskId = Annotated[str, msgspec.Meta(pattern=TASK_ID_PATTERN)]
ParentFailureName = Literal["cancel", "run"]
NodeName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
MAX_UNIQUE_FOR = 366 * 86400.0


class SubmitTask(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One task to submit; unset fields take the task type's defaults."""

    type: Name
    payload: Any = None
    priority: PriorityName | Annotated[int, msgspec.Meta(ge=0, le=2)] | None = None
    queue: Name | None = None
    delay: Delay | None = None
    run_at: DateTime | EpochSeconds | None = None
    timeout: Seconds | None = None
    max_attempts: Attempts | None = None
    idempotency_key: Key | None = None
    keep_result: Retention | None = None
    depends_on: Annotated[list[TaskId], msgspec.Meta(max_length=MAX_PARENTS)] | None = None
    on_parent_failure: ParentFailureName = "cancel"
    unique_for: Annotated[float, msgspec.Meta(gt=0, le=MAX_UNIQUE_FOR)] | None = None
    unique_while: Literal["queued", "running"] | None = None
    unique_key: Key | None = None

    def run_at_epoch(self) -> float | None:
        """run_at as seconds since the epoch; a date-time is clamped to 1970..9999 (see API.md)."""
        if not isinstance(self.run_at, str):
            return self.run_at
        try:
            seconds = parse_date_time(self.run_at)
        except ValueError:
            raise ValidationError(
                f"run_at {self.run_at!r} must be an RFC 3339 date-time with an offset "
                "(2026-01-31T12:00:00Z) or seconds since the epoch"
            ) from None
        return min(max(seconds, 0.0), LATEST_RUN_AT)


class WorkflowStep(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One node of a workflow: a unique name, its task (no idempotency key), and the names of
    the nodes it runs after (their results reach its handler in this order)."""

    name: NodeName
    task: SubmitTask
    after: Annotated[list[NodeName], msgspec.Meta(max_length=MAX_PARENTS)] = msgspec.field(
        default_factory=list
    )
    on_parent_failure: ParentFailureName = "cancel"


class SubmitWorkflow(msgspec.Struct, forbid_unknown_fields=True):
    """A DAG of tasks submitted in one batch: a chain, group or chord is such a list."""

    nodes: Annotated[list[WorkflowStep], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class LimitBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A scope's limits; both unset removes them (ADR 0038)."""

    max_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    rate_limit: (
        Annotated[str, msgspec.Meta(pattern=r"^0*[1-9][0-9]{0,8}(\.[0-9]{1,6})?/(s|m|h)$")] | None
    ) = None  # "100/s", "30/m", "5/h"
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None


class SubmitBatch(msgspec.Struct, forbid_unknown_fields=True):
    """Several tasks submitted in one broker round trip."""

    tasks: Annotated[list[SubmitTask], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class SubmittedBatch(msgspec.Struct):
    """The answer to a batch submission, aligned with the request."""

    tasks: list[Submitted]


class HealthView(msgspec.Struct):
    """A health answer."""

    status: str
    checks: dict[str, str] = msgspec.field(default_factory=dict)


class ErrorDetail(msgspec.Struct):
    """The body of every error."""

    code: str
    message: str


class ErrorView(msgspec.Struct):
    """Every error is `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class ControlRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /api/instances/{instance}/control: one remote-control command (ADR 0036)."""

    command: Literal["drain", "resume", "resize", "shutdown"]
    size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None  # resize only


StateName = Literal["blocked", "queued", "running", "succeeded", "dead", "cancelled"]
MAX_BULK_IDS = 10_000


class BulkFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which tasks a bulk action takes, as GET /api/tasks filters them (epoch seconds)."""

    state: list[StateName] | msgspec.UnsetType = msgspec.UNSET
    type: list[Name] | msgspec.UnsetType = msgspec.UNSET
    queue: list[Name] | msgspec.UnsetType = msgspec.UNSET
    priority: list[PriorityName] | msgspec.UnsetType = msgspec.UNSET
    created_after: EpochSeconds | msgspec.UnsetType = msgspec.UNSET
    created_before: EpochSeconds | msgspec.UnsetType = msgspec.UNSET


class BulkRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /api/bulk: an action on the tasks `ids` names, or on every task `filter`
    matches (one of the two)."""

    action: Literal["cancel", "replay", "delete"]
    ids: (
        Annotated[list[TaskId], msgspec.Meta(min_length=1, max_length=MAX_BULK_IDS)]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    filter: BulkFilter | msgspec.UnsetType = msgspec.UNSET


class BulkAnswer(msgspec.Struct):
    """How many tasks a bulk action changed."""

    action: str
    touched: int


class PurgeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /api/queues/{queue}/purge: `confirm` must be true."""

    confirm: Literal[True]


class PurgeAnswer(msgspec.Struct):
    """How many queued tasks a purge deleted."""

    queue: str
    purged: int


class PeriodicToggled(msgspec.Struct):
    """A periodic task enabled or disabled."""

    name: str
    enabled: bool
