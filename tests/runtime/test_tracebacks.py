"""Every failed attempt keeps its traceback (redacted, capped at 8 KiB with its tail kept),
from the async, thread and process executors alike."""

from __future__ import annotations

import pytest

from taskengine.model import TaskState
from taskengine.testing import running_worker
from tests.runtime.apps import BOARD, build_app, finished
from tests.runtime.conftest import MakeApp


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_every_failed_attempt_keeps_its_traceback_redacted(app_on: MakeApp) -> None:
    app = await app_on()
    task_id = await app.submit("fail.nested", max_attempts=2)
    async with running_worker(app, workers=1):
        [record] = await finished(app, [task_id], timeout=20)

    assert record.state is TaskState.DEAD
    assert len(record.history) == 2
    for line in record.history:
        trace = line.traceback or ""
        assert trace.startswith("Traceback (most recent call last):"), trace
        assert "_parse_pages" in trace and "KeyError: 'pages'" in trace
        assert "The above exception was the direct cause" in trace
        assert "hunter2" not in trace and "abc.def" not in trace, trace
        assert "[redacted]" in trace and "app:***@db" in trace


@pytest.mark.parametrize("kind", ["thread", "process"])
async def test_thread_and_process_runs_keep_the_handlers_frames(kind: str) -> None:
    app = build_app(processes=True)
    async with app:
        task_id = await app.submit(f"fail.nested.{kind}", max_attempts=1)
        async with running_worker(app, workers=1, process_pool=1):
            [record] = await finished(app, [task_id], timeout=60)

    [line] = record.history
    trace = line.traceback or ""
    assert "fail_nested_sync" in trace and "_parse_pages" in trace, trace
    assert trace.rstrip().endswith("KeyError: 'pages'"), trace


async def test_a_long_traceback_keeps_its_tail_within_8_kib() -> None:
    app = build_app()
    async with app:
        task_id = await app.submit("fail.long", 20_000, max_attempts=1)
        async with running_worker(app, workers=1):
            [record] = await finished(app, [task_id])

    trace = record.history[0].traceback or ""
    assert len(trace.encode()) <= 8 * 1024
    assert trace.rstrip().endswith("xxxEND"), trace[-100:]
    assert "head was cut" in trace.splitlines()[0]


async def test_a_timeout_keeps_no_traceback() -> None:
    app = build_app()
    async with app:
        task_id = await app.submit("sleep.async", 10.0, timeout=0.05, max_attempts=1)
        async with running_worker(app, workers=1):
            [record] = await finished(app, [task_id])

    assert record.history[0].status == "TIMEOUT"
    assert record.history[0].traceback is None
