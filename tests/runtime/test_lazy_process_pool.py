"""The process pool starts with the first task that needs it: an idle engine has no children."""

from __future__ import annotations

import os

import psutil
import pytest

from taskengine.model import ResultStatus, TaskState
from taskengine.request import TaskRequest
from taskengine.testing import running_worker
from tests.runtime import handlers
from tests.runtime.apps import build_app

pytestmark = pytest.mark.slow


def children() -> set[int]:
    """The pids of every process below this one (a forkserver left by other tests included)."""
    return {proc.pid for proc in psutil.Process(os.getpid()).children(recursive=True)}


async def test_an_engine_with_process_types_but_no_such_task_has_no_child_processes() -> None:
    app = build_app(processes=True)  # add.process and spin: executor="process"
    before = children()
    async with running_worker(app, process_pool=1) as worker:
        await worker.heartbeat_once()  # started and settled in: idle now
        assert children() - before == set()
        task_id = await app.submit("add.async", {"a": 1, "b": 2})
        assert (await app.result(task_id, timeout=20)).status is ResultStatus.SUCCESS
        assert children() - before == set()  # an async task needs no child either


async def test_the_first_process_task_starts_the_pool_and_runs_within_its_caps() -> None:
    app = build_app(processes=True)
    app.task("allocate", executor="process", max_attempts=3)(handlers.allocate)
    before = children()
    async with running_worker(app, process_pool=1, process_memory_mb=256) as worker:
        first, second = await app.submit_many(
            [
                TaskRequest(type="add.process", payload={"a": 20, "b": 22}),
                TaskRequest(type="add.process", payload={"a": 1, "b": 1}),
            ]
        )
        result = await app.result(first, timeout=30)
        assert result.status is ResultStatus.SUCCESS
        assert result.data["sum"] == 42
        assert result.data["pid"] in children() - before
        assert (await app.result(second, timeout=30)).data["sum"] == 2  # one pool for both
        # ADR 0015's cap holds in the pool started late: past it, a failure without a retry
        hog = await app.submit("allocate", 1536)
        assert (await app.result(hog, timeout=30)).status is ResultStatus.FAILURE
        record = await app.get(hog)
        assert record.state is TaskState.DEAD
        assert "memory cap" in (record.result.error if record.result else "")
        assert worker.runner.overrunning_threads == 0
