"""Task Engine: a concurrent task processing engine for Python on asyncio."""

from taskengine.brokers import DEFAULT_BROKER_URL, open_broker
from taskengine.clock import Clock, FakeClock, SystemClock
from taskengine.errors import (
    BrokerUnavailable,
    ConfigurationError,
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

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BROKER_URL",
    "BrokerUnavailable",
    "Clock",
    "ConfigurationError",
    "FakeClock",
    "InvalidTransition",
    "LeaseLost",
    "Priority",
    "QueueFull",
    "ResultStatus",
    "SystemClock",
    "Task",
    "TaskEngineError",
    "TaskNotFound",
    "TaskRecord",
    "TaskResult",
    "TaskState",
    "UnknownBroker",
    "ValidationError",
    "__version__",
    "new_task",
    "open_broker",
]
