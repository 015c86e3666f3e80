"""Task Engine: a concurrent task processing engine for Python on asyncio."""

import importlib
from typing import TYPE_CHECKING, Any

from taskengine.brokers import DEFAULT_BROKER_URL, open_broker
from taskengine.clock import Clock, FakeClock, SystemClock
from taskengine.errors import (
    BrokerUnavailable,
    ConfigurationError,
    IdempotencyConflict,
    InvalidTransition,
    LeaseLost,
    QueueFull,
    TaskEngineError,
    TaskNotFound,
    UnknownBroker,
    ValidationError,
)
from taskengine.model import (
    Priority,
    ResultStatus,
    Task,
    TaskRecord,
    TaskResult,
    TaskState,
    new_task,
)
from taskengine.policy.retry import NoRetry, Retry, Snooze

__version__ = "0.1.0"

if TYPE_CHECKING:
    from taskengine.app import App, TaskRequest
    from taskengine.settings import Settings
    from taskengine.workflows import Node, chain, chord, group, signature

_LAZY = {
    "App": "taskengine.app",
    "TaskRequest": "taskengine.app",
    "Settings": "taskengine.settings",
    "Node": "taskengine.workflows",
    "chain": "taskengine.workflows",
    "chord": "taskengine.workflows",
    "group": "taskengine.workflows",
    "signature": "taskengine.workflows",
}


def __getattr__(name: str) -> Any:
    """Import App, TaskRequest, Settings and the workflow builders on first use (the CLI
    starts without them)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskengine' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_BROKER_URL",
    "App",
    "BrokerUnavailable",
    "Clock",
    "ConfigurationError",
    "FakeClock",
    "IdempotencyConflict",
    "InvalidTransition",
    "LeaseLost",
    "NoRetry",
    "Node",
    "Priority",
    "QueueFull",
    "ResultStatus",
    "Retry",
    "Settings",
    "Snooze",
    "SystemClock",
    "Task",
    "TaskEngineError",
    "TaskNotFound",
    "TaskRecord",
    "TaskRequest",
    "TaskResult",
    "TaskState",
    "UnknownBroker",
    "ValidationError",
    "__version__",
    "chain",
    "chord",
    "group",
    "new_task",
    "open_broker",
    "signature",
]
