"""The task a producer submits and the record the broker keeps of it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

import msgspec

from taskengine.errors import ValidationError
from taskengine.model.deps import check_parents
from taskengine.model.ids import is_task_id, new_id
from taskengine.model.progress import Progress
from taskengine.model.result import AttemptRecord, TaskResult
from taskengine.model.state import TaskState

DEFAULT_QUEUE = "default"
DEFAULT_TIMEOUT = 30 * 60.0
DEFAULT_MAX_ATTEMPTS = 25
MAX_TIMEOUT = 7 * 24 * 3600.0
MAX_DELAY = 366 * 24 * 3600.0
LATEST_RUN_AT = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last time a datetime can show
MAX_ATTEMPTS_LIMIT = 1000
MAX_KEEP_RESULT = 366 * 24 * 3600.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")  # whole name: fullmatch
_VALID_NAMES: set[str] = set()  # names already checked, up to _VALID_NAMES_KEPT of them
_VALID_NAMES_KEPT = 10_000


class Priority(IntEnum):
    """Three tiers; higher runs first (see model.priority for the starvation bound)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2

    @classmethod
    def parse(cls, value: Priority | int | str) -> Priority:
        """Accept a Priority, its number, or its name in any case ("high", "HIGH")."""
        if type(value) is cls:  # the common case, without the cost of an Enum lookup
            return value
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValidationError(
                    f"unknown priority {value!r}: use HIGH, NORMAL or LOW"
                ) from None
        try:
            return cls(value)
        except ValueError:
            raise ValidationError(f"unknown priority {value!r}: use 0, 1 or 2") from None


class Task(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A unit of work: a registered type name, a JSON payload and how to run it."""

    id: str
    type: str
    payload: Any = None
    priority: Priority = Priority.NORMAL
    queue: str = DEFAULT_QUEUE
    created_at: float
    run_at: float
    timeout: float = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    attempt: int = 0
    idempotency_key: str | None = None
    # The W3C traceparent of the span that submitted the task (taskengine.tracing), or None.
    trace: str | None = None
    # Seconds the record of this task is kept once it succeeded: None = the global retention
    # (finished_ttl), 0 = deleted by the settle itself, > 0 = purged at finished_at + this.
    # Dead and cancelled tasks keep the global retention (the dead letters stay replayable).
    keep_result: float | None = None
    # The tasks that must succeed before this one is queued (model.deps); it waits `blocked`.
    depends_on: tuple[str, ...] = ()
    # What a parent ending dead or cancelled does to it: "cancel" it, or "run" it anyway.
    on_parent_failure: str = "cancel"
    # The workflow (chain, group, chord, DAG) this task is a node of, by the workflow's id.
    workflow: str | None = None


class TaskRecord(Task, frozen=True, kw_only=True, gc=False):
    """A task as the broker holds it: its state, lease and what its attempts came to."""

    state: TaskState = TaskState.QUEUED
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    waiting: int = 0  # parents not yet settled, while blocked
    result: TaskResult | None = None
    history: list[AttemptRecord] = msgspec.field(default_factory=list)
    # The last progress a run reported (Broker.progress); kept when the task settles.
    progress: Progress | None = None


def validate_name(kind: str, value: str) -> str:
    """Return `value` if it is a valid task type or queue name, else raise ValidationError."""
    if type(value) is str and value in _VALID_NAMES:  # a producer repeats a few names
        return value
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            f"invalid {kind} {value!r}: 1-128 characters of letters, digits, '_', '.', ':' or '-'"
        )
    if len(_VALID_NAMES) < _VALID_NAMES_KEPT:
        _VALID_NAMES.add(value)
    return value


def new_task(
    type: str,
    payload: Any = None,
    *,
    now: float,
    priority: Priority | int | str = Priority.NORMAL,
    queue: str = DEFAULT_QUEUE,
    run_at: float | None = None,
    delay: float | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    idempotency_key: str | None = None,
    task_id: str | None = None,
    trace: str | None = None,
    keep_result: float | None = None,
    depends_on: Sequence[str] = (),
    on_parent_failure: str = "cancel",
    workflow: str | None = None,
) -> Task:
    """Build a validated Task created at `now`; `run_at` or `delay` schedule it for later."""
    validate_name("task type", type)
    validate_name("queue", queue)
    if run_at is not None and delay is not None:
        raise ValidationError("give run_at or delay, not both")
    if delay is not None:
        if not 0 <= delay <= MAX_DELAY:
            raise ValidationError(
                f"delay {delay!r} must be between 0 and 366 days ({MAX_DELAY:.0f} s)"
            )
        run_at = now + delay
    if run_at is None:
        run_at = now
    if not 0 <= run_at <= LATEST_RUN_AT:
        raise ValidationError(f"run_at {run_at!r} must be between 1970 and the year 9999")
    if not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        raise ValidationError(f"timeout {timeout!r} must be > 0 and at most {MAX_TIMEOUT:.0f} s")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise ValidationError(f"max_attempts {max_attempts!r} must be an integer")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValidationError(f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 256:
        raise ValidationError("idempotency_key must be 1-256 characters")
    if idempotency_key is not None and "\x00" in idempotency_key:
        raise ValidationError("idempotency_key must not contain a NUL character")
    check_keep_result(keep_result)
    task_id = task_id or new_id(now)
    parents = check_parents(task_id, depends_on, on_parent_failure)
    for parent in parents:
        if not is_task_id(parent):
            raise ValidationError(f"depends_on: {parent!r} is not a task id")
    if workflow is not None and not is_task_id(workflow):
        raise ValidationError(f"workflow {workflow!r} is not an id")
    return Task(
        id=task_id,
        type=type,
        payload=payload,
        priority=Priority.parse(priority),
        queue=queue,
        created_at=now,
        run_at=float(run_at),
        timeout=float(timeout),
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        trace=trace,
        keep_result=None if keep_result is None else float(keep_result),
        depends_on=parents,
        on_parent_failure=on_parent_failure,
        workflow=workflow,
    )


def check_keep_result(keep_result: float | None) -> None:
    """Raise ValidationError unless `keep_result` is None or 0 to MAX_KEEP_RESULT seconds."""
    if keep_result is None:
        return
    if isinstance(keep_result, bool) or not isinstance(keep_result, int | float):
        raise ValidationError(f"keep_result {keep_result!r} must be a number of seconds")
    if not 0 <= keep_result <= MAX_KEEP_RESULT:
        raise ValidationError(
            f"keep_result {keep_result!r} must be between 0 and {MAX_KEEP_RESULT:.0f} s"
        )


def queued_record(task: Task, now: float) -> TaskRecord:
    """Return the record of a freshly enqueued task."""
    return TaskRecord(**msgspec.structs.asdict(task), state=TaskState.QUEUED, updated_at=now)
