"""The public surface is curated: this pins it, so a change to it is a deliberate one."""

import pytest

import taskengine
from taskengine import workflows

EXPECTED = {
    "App", "BrokerUnavailable", "Clock", "ConfigurationError", "DEFAULT_BROKER_URL", "FakeClock",
    "InvalidTransition", "LeaseLost", "Priority", "QueueFull", "ResultStatus", "Settings",
    "SystemClock", "Task", "TaskEngineError", "TaskNotFound", "TaskRecord", "TaskRequest",
    "TaskResult", "TaskState", "UnknownBroker", "ValidationError", "__version__", "new_task",
    "open_broker", "NoRetry", "Retry", "Snooze", "IdempotencyConflict",
    "Node", "chain", "chord", "group", "signature",
}  # fmt: skip


def test_all_is_pinned() -> None:
    assert set(taskengine.__all__) == EXPECTED


def test_every_name_resolves_and_unknown_names_raise() -> None:
    for name in taskengine.__all__:
        assert getattr(taskengine, name) is not None
    assert taskengine.App.__name__ == "App"
    assert taskengine.chord is workflows.chord and taskengine.Node is workflows.Node
    with pytest.raises(AttributeError, match="NoSuchThing"):
        taskengine.NoSuchThing  # noqa: B018
