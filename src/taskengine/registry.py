"""The task registry: the allow-list of task types, their handlers and how they run."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_type_hints

import msgspec

from taskengine.errors import ValidationError
from taskengine.model.progress import MAX_NOTE_CHARS
from taskengine.model.task import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT,
    Priority,
    check_keep_result,
    validate_name,
)

ExecutorKind = Literal["async", "thread", "process"]
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = ("async", "thread", "process")
F = TypeVar("F", bound=Callable[..., Any])


class UnknownTaskType(ValidationError):
    """No handler is registered under that task type."""

    code = "unknown_task_type"


class InvalidPayload(ValidationError):
    """A payload does not match the handler's declared payload type."""

    code = "invalid_payload"


class TaskContext:
    """What a handler that asks for a second argument gets: the task's id, attempt and progress."""

    __slots__ = (
        "_report",
        "attempt",
        "progress_done",
        "progress_note",
        "progress_total",
        "task_id",
        "worker_id",
    )

    def __init__(
        self,
        task_id: str,
        attempt: int,
        worker_id: str,
        report: Callable[[int, int, str | None], None] | None = None,
    ) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.worker_id = worker_id
        self.progress_done = 0
        self.progress_total = 0
        self.progress_note: str | None = None
        self._report = report

    def progress(self, done: int, total: int = 0, note: str | None = None) -> None:
        """Report that `done` of `total` units are done (total 0: unknown), with a short note.

        Cheap and safe from any thread: the engine writes the latest report through the
        broker at most once a second (the task's `progress`); a note past 200 characters is
        cut. Raises ValidationError for negative or non-integer counts.
        """
        done, total, note = check_progress(done, total, note)
        self.progress_done = done
        self.progress_total = total
        self.progress_note = note
        if self._report is not None:
            self._report(done, total, note)


def check_progress(done: Any, total: Any, note: Any) -> tuple[int, int, str | None]:
    """The counts and note of a progress report, validated (the note cut to 200 characters)."""
    for name, value in (("done", done), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"progress {name} must be a non-negative integer, got {value!r}")
    if note is not None and not isinstance(note, str):
        raise ValidationError(f"progress note must be a string, got {type(note).__name__}")
    if note is not None:
        note = note[:MAX_NOTE_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
    return done, total, note


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A registered task type: its handler and the defaults of the tasks submitted to it."""

    name: str
    fn: Callable[..., Any]
    executor: ExecutorKind
    timeout: float = DEFAULT_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    queue: str = DEFAULT_QUEUE
    priority: Priority = Priority.NORMAL
    payload_type: Any = None  # a msgspec-convertible type, or None for any JSON
    wants_context: bool = False
    retryable: bool = True
    # Seconds a succeeded task's record is kept: None = the global retention, 0 = deleted when
    # it settles (model.task.Task.keep_result).
    keep_result: float | None = None
    # False: failures do not count against the runner's per-type circuit breaker, for a type
    # that keeps finer breakers of its own (io.http, per host), so one bad target cannot stall
    # every task of the type.
    breaker: bool = True

    def check(self, payload: Any) -> None:
        """Raise InvalidPayload unless the payload converts to the declared type; a payload
        already of a bare declared type (`dict`, `list`, `str`...) costs one type check."""
        if self.payload_type is None or type(payload) is self.payload_type:
            return
        self.convert(payload)

    def convert(self, payload: Any) -> Any:
        """Return the payload as the handler's declared type; raise InvalidPayload if it is not."""
        if self.payload_type is None:
            return payload
        try:
            return msgspec.convert(payload, self.payload_type)
        except msgspec.ValidationError as exc:
            raise InvalidPayload(f"invalid payload for {self.name}: {exc}") from exc


class Registry:
    """Task types by name. Only registered types can be submitted or run (an allow-list)."""

    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def task(
        self,
        name: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        queue: str = DEFAULT_QUEUE,
        priority: Priority | int | str = Priority.NORMAL,
        executor: ExecutorKind | None = None,
        retryable: bool = True,
        breaker: bool = True,
        keep_result: float | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as task type `name` (default: module.function).

        Coroutine functions run on the event loop, plain functions in the thread pool unless
        `executor="process"` (which needs a module-level function). A first parameter
        annotated with a msgspec Struct, dataclass or TypedDict validates payloads at submit.
        `breaker=False` keeps the type's failures off its circuit breaker (see TaskSpec);
        `keep_result` says how long a succeeded task's record is kept (0: not at all).
        """

        def decorate(fn: F) -> F:
            self.register(
                build_spec(
                    fn,
                    name=task_name(fn, name),
                    timeout=timeout,
                    max_attempts=max_attempts,
                    queue=queue,
                    priority=Priority.parse(priority),
                    executor=executor,
                    retryable=retryable,
                    breaker=breaker,
                    keep_result=keep_result,
                )
            )
            return fn

        return decorate

    def register(self, spec: TaskSpec) -> None:
        """Add a spec; registering the same name twice with another handler is an error."""
        existing = self._specs.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            raise ValidationError(f"task type {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> TaskSpec:
        """Return the spec of `name`; raise UnknownTaskType if there is none."""
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownTaskType(f"unknown task type {name!r}") from None

    def find(self, name: str) -> TaskSpec | None:
        """Return the spec of `name`, or None if there is none."""
        return self._specs.get(name)

    def names(self) -> list[str]:
        """Return the registered task type names, sorted."""
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def merge(self, other: Registry) -> None:
        """Register every spec of `other` here too."""
        for spec in other._specs.values():
            self.register(spec)


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str,
    timeout: float = DEFAULT_TIMEOUT,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    queue: str = DEFAULT_QUEUE,
    priority: Priority = Priority.NORMAL,
    executor: ExecutorKind | None = None,
    retryable: bool = True,
    breaker: bool = True,
    keep_result: float | None = None,
) -> TaskSpec:
    """Inspect `fn` and build its validated TaskSpec."""
    validate_name("task type", name)
    validate_name("queue", queue)
    is_async = inspect.iscoroutinefunction(fn)
    if executor is None:
        executor = "async" if is_async else "thread"
    if executor not in EXECUTOR_KINDS:
        raise ValidationError(f"executor must be one of {EXECUTOR_KINDS}, got {executor!r}")
    if (executor == "async") != is_async:
        raise ValidationError(
            f"{name}: executor {executor!r} needs {'an async' if executor == 'async' else 'a sync'}"
            " function"
        )
    check_keep_result(keep_result)
    if not timeout > 0 or max_attempts < 1:
        raise ValidationError(f"{name}: timeout must be > 0 and max_attempts >= 1")
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2:
        raise ValidationError(f"{name}: a handler takes (payload) or (payload, ctx)")
    wants_context = len(params) == 2
    if executor == "process" and "<locals>" in fn.__qualname__:
        raise ValidationError(f"{name}: process handlers must be module-level functions")
    return TaskSpec(
        name=name,
        fn=fn,
        executor=executor,
        timeout=timeout,
        max_attempts=max_attempts,
        queue=queue,
        priority=priority,
        payload_type=_payload_type(fn, params[0].name),
        wants_context=wants_context,
        retryable=retryable,
        breaker=breaker,
        keep_result=keep_result,
    )


def task_name(fn: Callable[..., Any], name: str | None = None) -> str:
    """The task type name of `fn`: `name` if given, else its module.qualname."""
    return name or f"{fn.__module__}.{fn.__qualname__}"


def _payload_type(fn: Callable[..., Any], param: str) -> Any:
    try:
        hints = get_type_hints(fn)
    except Exception:  # unresolvable annotations: accept any JSON payload
        return None
    hint = hints.get(param)
    return None if hint in (None, Any, object) else hint
