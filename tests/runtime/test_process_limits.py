"""The process executor's caps: memory per child, CPU time per task (real child processes)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from taskengine.errors import (
    ConfigurationError,
    CpuTimeExceeded,
    MemoryCapExceeded,
    TaskFailed,
    ValidationError,
)
from taskengine.registry import TaskSpec, build_spec
from taskengine.runtime.process_pool import ProcessExecutor
from taskengine.runtime.runner import refused_input
from taskengine.settings import Settings
from tests.runtime import handlers

pytestmark = pytest.mark.slow


def spec_of(fn: Callable[..., Any]) -> TaskSpec:
    return build_spec(fn, name=f"test.{fn.__name__}", executor="process")


@pytest.fixture
async def capped() -> AsyncIterator[ProcessExecutor]:
    """One child, 256 MB of address space, 2 s of CPU per task."""
    ex = ProcessExecutor(processes=1, memory_mb=256, cpu_seconds=2)
    await ex.start()
    yield ex
    await ex.close()


async def test_a_task_allocating_past_the_memory_cap_fails_alone(capped: ProcessExecutor) -> None:
    before = await capped.run(spec_of(handlers.allocate), 16, timeout=30)
    with pytest.raises(MemoryCapExceeded) as info:
        await capped.run(spec_of(handlers.allocate), 1536, timeout=30)
    assert "memory cap" in str(info.value)
    assert "256 MB" in str(info.value)
    assert refused_input(info.value)  # the same input fails again: no retry
    after = await capped.run(spec_of(handlers.allocate), 16, timeout=30)
    assert after["allocated"] == 16 * 1024 * 1024
    assert after["pid"] == before["pid"]  # the child survived its MemoryError


async def test_a_cpu_hog_is_stopped_by_the_cpu_cap_and_the_child_replaced(
    capped: ProcessExecutor,
) -> None:
    first = await capped.run(spec_of(handlers.add), {"a": 1, "b": 1}, timeout=30)
    began = time.monotonic()
    with pytest.raises(CpuTimeExceeded) as info:
        await capped.run(spec_of(handlers.busy), 120.0, timeout=120)
    assert time.monotonic() - began < 60  # stopped by the cap, long before its own 120 s
    assert "CPU time" in str(info.value)
    assert refused_input(info.value)
    after = await capped.run(spec_of(handlers.add), {"a": 2, "b": 2}, timeout=30)
    assert after["sum"] == 4
    assert after["pid"] != first["pid"]  # a fresh child


async def test_the_cpu_cap_is_per_task_not_per_child(capped: ProcessExecutor) -> None:
    pids = set()
    for _ in range(4):  # 4 x 1.2 s of CPU in one child: over the cap in total, never per task
        result = await capped.run(spec_of(handlers.busy), 1.2, timeout=30)
        pids.add(result["pid"])
    assert len(pids) == 1


async def test_without_caps_a_large_allocation_succeeds() -> None:
    ex = ProcessExecutor(processes=1, memory_mb=0, cpu_seconds=0)
    await ex.start()
    try:
        result = await ex.run(spec_of(handlers.allocate), 512, timeout=30)
    finally:
        await ex.close()
    assert result["allocated"] == 512 * 1024 * 1024


def test_a_memory_error_without_a_cap_stays_a_plain_failure() -> None:
    assert not refused_input(TaskFailed("MemoryError", "boom"))


@pytest.mark.parametrize(
    "changes",
    [{"process_memory_mb": 10}, {"process_cpu_seconds": -1}, {"watchdog_margin": -1}],
)
def test_settings_refuse_caps_that_cannot_work(changes: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**changes)


def test_the_executor_refuses_negative_caps() -> None:
    with pytest.raises(ValidationError):
        ProcessExecutor(1, memory_mb=-1)
