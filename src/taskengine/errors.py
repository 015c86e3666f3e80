"""The exception hierarchy: every error the engine raises on purpose is a TaskEngineError."""

from __future__ import annotations


class TaskEngineError(Exception):
    """Base class of every error raised by Task Engine; `code` is stable for APIs."""

    code = "task_engine_error"


class ConfigurationError(TaskEngineError):
    """Settings or a broker URL are invalid."""

    code = "configuration_error"


class ValidationError(TaskEngineError):
    """A task, payload or argument is invalid."""

    code = "validation_error"


class ResultTooLarge(ValidationError):
    """A task's result is over the configured size cap (`max_result_bytes`); not stored."""

    code = "result_too_large"


class IdempotencyConflict(TaskEngineError):
    """An idempotency key was already used for another request (type, payload, priority or
    queue differ), or twice in one batch with different requests."""

    code = "idempotency_conflict"

    def __init__(self, message: str, *, key: str, existing_id: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.existing_id = existing_id


class InvalidTransition(TaskEngineError):
    """A task was asked to move between states the lifecycle does not allow."""

    code = "invalid_transition"


class QueueFull(TaskEngineError):
    """The broker is at its configured depth: the whole batch was refused, nothing stored."""

    code = "queue_full"

    def __init__(self, depth: int, limit: int, offered: int) -> None:
        super().__init__(f"queue full: {depth} tasks queued, limit {limit}, {offered} more refused")
        self.depth = depth
        self.limit = limit
        self.offered = offered


class TaskNotFound(TaskEngineError):
    """No task has that id."""

    code = "task_not_found"


class LeaseLost(TaskEngineError):
    """The lease on a task expired or was taken over; its run must stop."""

    code = "lease_lost"


class BrokerUnavailable(TaskEngineError):
    """The broker cannot be reached or is closed."""

    code = "broker_unavailable"


class ShutdownIncomplete(TaskEngineError):
    """A worker stopped without handing every outcome to the broker (it was unreachable)."""

    code = "shutdown_incomplete"


class UnknownBroker(ConfigurationError):
    """The broker URL names a scheme no broker serves."""

    code = "unknown_broker"


class TaskTimeout(TaskEngineError):
    """A run took longer than its timeout and was stopped."""

    code = "task_timeout"


class TaskFailed(TaskEngineError):
    """A handler raised; in another process its exception arrives as type name and message."""

    code = "task_failed"

    def __init__(self, error_type: str, message: str, child_traceback: str = "") -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.child_traceback = child_traceback  # formatted in the child process, or ""


class ResourceCapExceeded(TaskEngineError):
    """A process task passed its child's memory or CPU-time cap; the same input would pass it
    again, so the task is not retried."""

    code = "resource_cap_exceeded"


class MemoryCapExceeded(ResourceCapExceeded):
    """A process task allocated past its child's memory cap (MemoryError in the child)."""

    code = "memory_cap_exceeded"


class CpuTimeExceeded(ResourceCapExceeded, TaskTimeout):
    """A process task used more CPU time than one task may; its child was killed."""

    code = "cpu_time_exceeded"
