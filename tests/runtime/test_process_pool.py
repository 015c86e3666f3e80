"""The process executor: results, errors, hard timeouts, cancellation and parallelism."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from taskengine.errors import TaskFailed, TaskTimeout, ValidationError
from taskengine.registry import TaskSpec, build_spec
from taskengine.runtime.process_pool import ProcessExecutor, handler_path, run_in_child
from tests.runtime import handlers

pytestmark = pytest.mark.slow


def spec_of(fn: Callable[..., Any]) -> TaskSpec:
    return build_spec(fn, name=f"test.{fn.__name__}", executor="process")


@pytest.fixture
async def executor() -> AsyncIterator[ProcessExecutor]:
    ex = ProcessExecutor(processes=2)
    await ex.start()
    yield ex
    await ex.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (a recycled pid)
        return True
    return True


async def wait_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not pid_alive(pid)


async def read_pid(path: Path, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""  # noqa: ASYNC240 (a tiny file)
        if text:
            return int(text)
        await asyncio.sleep(0.02)
    raise AssertionError("the child never wrote its pid")


async def test_returns_the_handler_result_from_another_process(executor: ProcessExecutor) -> None:
    result = await executor.run(spec_of(handlers.add), {"a": 2, "b": 3}, timeout=10)
    assert result["sum"] == 5
    assert result["pid"] != os.getpid()


async def test_a_struct_payload_is_sent_as_json(executor: ProcessExecutor) -> None:
    result = await executor.run(spec_of(handlers.add), handlers.Add(a=1, b=1), timeout=10)
    assert result["sum"] == 2


async def test_a_handler_error_becomes_task_failed(executor: ProcessExecutor) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.run(spec_of(handlers.fail), "x", timeout=10)
    assert info.value.error_type == "ValueError"
    assert "bad value 'x'" in info.value.message
    assert any("ValueError" in note for note in getattr(info.value, "__notes__", []))


async def test_an_invalid_payload_fails_in_the_child(executor: ProcessExecutor) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.run(spec_of(handlers.add), {"a": "two", "b": 3}, timeout=10)
    assert info.value.error_type == "ValidationError"


async def test_a_result_that_is_not_json_becomes_task_failed(executor: ProcessExecutor) -> None:
    with pytest.raises(TaskFailed, match="not JSON-serialisable"):
        await executor.run(spec_of(handlers.not_json), None, timeout=10)


async def test_a_crashing_child_is_task_failed_and_replaced(executor: ProcessExecutor) -> None:
    with pytest.raises(TaskFailed) as info:
        await executor.run(spec_of(handlers.die), None, timeout=10)
    assert info.value.error_type == "ProcessExpired"
    assert (await executor.run(spec_of(handlers.add), {"a": 1, "b": 2}, timeout=10))["sum"] == 3


async def test_a_runaway_task_is_killed_at_its_timeout(
    executor: ProcessExecutor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(TaskTimeout):
        await executor.run(spec_of(handlers.spin), {"pid_file": str(pid_file)}, timeout=1)
    assert time.monotonic() - started < 1 + 2 + 1  # timeout + 2 s, + 1 s for a slow child start
    assert await wait_gone(int(pid_file.read_text()), within=5)
    result = await executor.run(spec_of(handlers.add), {"a": 4, "b": 4}, timeout=10)
    assert result["sum"] == 8


async def test_cancelling_the_awaiting_task_kills_the_child(
    executor: ProcessExecutor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    run = asyncio.create_task(
        executor.run(spec_of(handlers.spin), {"pid_file": str(pid_file)}, timeout=600)
    )
    pid = await read_pid(pid_file)
    assert pid_alive(pid)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await wait_gone(pid, within=6)
    result = await executor.run(spec_of(handlers.add), {"a": 5, "b": 5}, timeout=10)
    assert result["sum"] == 10


async def test_a_caller_timeout_kills_the_child(executor: ProcessExecutor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            await executor.run(spec_of(handlers.spin), {"pid_file": str(pid_file)}, timeout=600)
    assert await wait_gone(await read_pid(pid_file), within=6)
    assert (await executor.run(spec_of(handlers.add), {"a": 0, "b": 1}, timeout=10))["sum"] == 1


async def test_two_processes_run_two_tasks_in_parallel(executor: ProcessExecutor) -> None:
    spec = spec_of(handlers.busy)
    first, second = await asyncio.gather(
        executor.run(spec, 1.0, timeout=30), executor.run(spec, 1.0, timeout=30)
    )
    assert first["pid"] != second["pid"]
    # the two runs overlap in time: each started before the other ended
    assert first["start"] < second["end"]
    assert second["start"] < first["end"]


async def test_close_is_idempotent_and_fails_running_tasks(tmp_path: Path) -> None:
    ex = ProcessExecutor(processes=1)
    await ex.start()
    pid_file = tmp_path / "pid"
    run = asyncio.create_task(
        ex.run(spec_of(handlers.spin), {"pid_file": str(pid_file)}, timeout=600)
    )
    pid = await read_pid(pid_file)
    await ex.close()
    await ex.close()
    with pytest.raises(TaskFailed) as info:
        await run
    assert info.value.error_type == "ExecutorClosed"
    assert await wait_gone(pid, within=6)
    with pytest.raises(Exception, match="not running"):
        await ex.run(spec_of(handlers.add), {"a": 1, "b": 1}, timeout=10)


def test_the_child_side_speaks_json_only() -> None:
    module, qualname = handler_path(handlers.add)
    assert (module, qualname) == ("tests.runtime.handlers", "add")
    reply = run_in_child(module, qualname, b'{"a": 1, "b": 2}')
    assert b'"sum":3' in reply
    assert b'"error_type":"ValueError"' in run_in_child(module, "fail", b"1")


def test_local_functions_are_refused() -> None:
    def local(payload: Any) -> None:
        return None

    with pytest.raises(ValidationError):
        handler_path(local)


def test_default_size_is_the_core_count() -> None:
    assert ProcessExecutor().processes == (os.cpu_count() or 1)
    with pytest.raises(ValidationError):
        ProcessExecutor(processes=0)


def test_an_unprintable_error_still_becomes_a_json_reply() -> None:
    reply = run_in_child("tests.runtime.handlers", "unprintable", b"null")
    assert b'"error_type":"_Unprintable"' in reply


async def test_the_first_runs_start_the_pool_once_and_share_it() -> None:
    ex = ProcessExecutor(processes=2)
    assert not ex.started  # nothing started before a task needs it
    try:
        spec = spec_of(handlers.add)
        first, second = await asyncio.gather(
            ex.run(spec, {"a": 1, "b": 2}, timeout=30), ex.run(spec, {"a": 3, "b": 4}, timeout=30)
        )
        assert (first["sum"], second["sum"]) == (3, 7)
        assert ex.started
    finally:
        await ex.close()
    assert not ex.started


async def test_an_executor_never_started_closes_without_children() -> None:
    ex = ProcessExecutor(processes=1)
    await ex.close()
    with pytest.raises(Exception, match="not running"):
        await ex.run(spec_of(handlers.add), {"a": 1, "b": 1}, timeout=10)
