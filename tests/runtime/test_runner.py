"""Running tasks through a real worker pool on the memory broker: executors, results,
failures, retries, timeouts and the circuit breaker, as a user of the engine sees them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from taskengine.clock import FakeClock
from taskengine.model import ResultStatus, TaskState
from taskengine.runtime.watchdog import Stall
from taskengine.testing import drain, running_worker
from tests.runtime.apps import BOARD, build_app, finished, wait_for


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_async_and_thread_handlers_run_and_their_results_are_stored() -> None:
    app = build_app()
    a = await app.submit("add.async", {"a": 1, "b": 2})
    t = await app.submit("add.thread", {"a": 3, "b": 4})
    await drain(app, timeout=10)
    ra, rt = await app.result(a, timeout=1), await app.result(t, timeout=1)
    assert (ra.status, ra.data) == (ResultStatus.SUCCESS, {"sum": 3, "kind": "async"})
    assert rt.status is ResultStatus.SUCCESS
    assert rt.data == {"sum": 7, "kind": "thread", "off_loop": True}
    for task_id in (a, t):
        record = await app.get(task_id)
        assert record.state is TaskState.SUCCEEDED
        assert record.attempt == 1
        assert [line.status for line in record.history] == [ResultStatus.SUCCESS]
        assert record.result is not None and record.result.worker_id is not None


async def test_a_failing_task_is_retried_with_backoff_then_dead_with_its_full_history() -> None:
    app = build_app(retry_base=0.01)
    task_id = await app.submit("fail.always", max_attempts=4)
    async with running_worker(app, workers=2):
        [record] = await finished(app, [task_id])
    assert record.state is TaskState.DEAD
    assert record.attempt == 4
    assert [line.attempt for line in record.history] == [1, 2, 3, 4]
    assert {line.status for line in record.history} == {ResultStatus.FAILURE}
    assert all("boom on attempt" in (line.error or "") for line in record.history)
    assert record.result is not None and record.result.status is ResultStatus.FAILURE
    assert "attempts exhausted" in (record.result.error or "")
    assert BOARD.events("run") == [(task_id, n) for n in (1, 2, 3, 4)]


async def test_a_task_that_succeeds_on_a_later_attempt_is_succeeded() -> None:
    app = build_app(retry_base=0.01)
    task_id = await app.submit("fail.until", {"succeed_on": 3}, max_attempts=5)
    async with running_worker(app):
        [record] = await finished(app, [task_id])
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 3
    assert [(h.attempt, h.status) for h in record.history] == [
        (1, ResultStatus.FAILURE),
        (2, ResultStatus.FAILURE),
        (3, ResultStatus.SUCCESS),
    ]
    assert record.result is not None and record.result.data == {"attempt": 3}


async def test_retry_requested_by_the_handler_uses_its_delay() -> None:
    # retry_base is huge: only the handler's own Retry(0.05) can bring the task back soon.
    app = build_app(retry_base=3600.0)
    task_id = await app.submit("ask.retry", {"delay": 0.05}, max_attempts=3)
    async with running_worker(app):
        [record] = await finished(app, [task_id])
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 2
    first = record.history[0]
    assert first.status is ResultStatus.FAILURE
    assert "come back later" in (first.error or "")


async def test_no_retry_dead_letters_at_once() -> None:
    app = build_app()
    task_id = await app.submit("no.retry", max_attempts=10)
    await drain(app, timeout=10)
    record = await app.get(task_id)
    assert record.state is TaskState.DEAD
    assert record.attempt == 1
    assert len(record.history) == 1
    assert record.result is not None
    assert "this will never work" in (record.result.error or "")
    assert "not retryable" in (record.result.error or "")


async def test_a_snoozing_handler_gives_its_attempt_back_and_runs_later() -> None:
    clock = FakeClock()
    app = build_app(clock=clock)
    task_id = await app.submit("snooze.once")
    await drain(app, timeout=10)
    record = await app.get(task_id)
    assert record.state is TaskState.QUEUED  # not due for another 60 s
    assert record.attempt == 0
    assert record.history == []
    assert record.run_at == clock.now() + 60
    clock.advance(61)
    await drain(app, timeout=10)
    record = await app.get(task_id)
    assert record.state is TaskState.SUCCEEDED
    assert record.attempt == 1
    assert BOARD.events("run") == [(task_id, 1), (task_id, 1)]


async def test_an_async_handler_past_its_timeout_is_a_timeout_and_is_retried() -> None:
    app = build_app(retry_base=0.01)
    task_id = await app.submit("sleep.async", 30, timeout=0.1, max_attempts=2)
    started = time.monotonic()
    async with running_worker(app):
        [record] = await finished(app, [task_id])
    assert time.monotonic() - started < 10
    assert record.state is TaskState.DEAD
    assert [(h.attempt, h.status) for h in record.history] == [
        (1, ResultStatus.TIMEOUT),
        (2, ResultStatus.TIMEOUT),
    ]
    assert record.result is not None and record.result.status is ResultStatus.TIMEOUT
    assert "timed out" in (record.result.error or "")


async def test_a_handler_that_swallows_its_timeout_still_times_out() -> None:
    app = build_app()

    @app.task("stubborn")
    async def stubborn(payload: Any) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return "ignored the cancellation"
        return "slept"

    task_id = await app.submit("stubborn", timeout=0.1, max_attempts=1)
    async with running_worker(app):
        [record] = await finished(app, [task_id])
    assert record.result is not None and record.result.status is ResultStatus.TIMEOUT
    assert record.state is TaskState.DEAD


async def test_a_sync_handler_that_overruns_is_a_timeout_and_its_thread_is_counted() -> None:
    app = build_app()
    task_id = await app.submit("thread.gate", {"key": "t1"}, timeout=0.1, max_attempts=1)
    async with running_worker(app) as worker:
        [record] = await finished(app, [task_id])
        assert record.state is TaskState.DEAD
        assert record.result is not None and record.result.status is ResultStatus.TIMEOUT
        # The thread cannot be killed: it still runs, and the runner says so.
        assert BOARD.events("finish") == []
        assert worker.runner.overrunning_threads == 1
        BOARD.thread_release("t1").set()
        await wait_for(lambda: worker.runner.overrunning_threads == 0, what="the thread to end")
        assert BOARD.events("finish") == [("t1", 0)]
    # Its late return changed nothing.
    assert (await app.get(task_id)).state is TaskState.DEAD


@pytest.mark.slow
async def test_process_handlers_run_and_a_runaway_is_killed_at_its_timeout() -> None:
    app = build_app(processes=True)
    async with running_worker(app, process_pool=1) as worker:
        ok = await app.submit("add.process", {"a": 20, "b": 22})
        first = await app.result(ok, timeout=20)  # the first one also waits for the pool to start
        assert first.status is ResultStatus.SUCCESS
        assert first.data["sum"] == 42
        assert first.data["kind"] == "process"
        start = time.monotonic()
        runaway = await app.submit("spin")  # timeout 1 s, one attempt
        result = await app.result(runaway, timeout=10)
        assert result.status is ResultStatus.TIMEOUT
        assert time.monotonic() - start < 1 + 2
        assert (await app.get(runaway)).state is TaskState.DEAD
        # The only child was killed; a replacement runs the next task.
        again = await app.submit("add.process", {"a": 1, "b": 1})
        second = await app.result(again, timeout=10)
        assert second.status is ResultStatus.SUCCESS
        assert second.data["sum"] == 2
        assert second.data["pid"] != first.data["pid"]
        assert worker.runner.overrunning_threads == 0


async def test_a_result_that_is_not_json_is_a_failure() -> None:
    app = build_app()
    task_id = await app.submit("not.json", max_attempts=3)
    await drain(app, timeout=10)
    record = await app.get(task_id)
    assert record.state is TaskState.DEAD
    assert record.result is not None
    assert record.result.status is ResultStatus.FAILURE
    assert "JSON" in (record.result.error or "")
    assert record.result.data is None


async def test_the_breaker_snoozes_a_failing_type_without_burning_attempts() -> None:
    app = build_app()
    # Five failures in a row of one type open its breaker (BreakerConfig's default).
    failing = [await app.submit("fail.always", max_attempts=1) for _ in range(5)]
    async with running_worker(app, workers=1) as worker:
        await finished(app, failing)
        assert not worker.breakers.get("fail.always").is_closed
        blocked = await app.submit("fail.always", max_attempts=5)
        other = await app.submit("add.async", {"a": 1, "b": 1})
        assert (await app.result(other, timeout=5)).status is ResultStatus.SUCCESS

        async def snoozed() -> bool:
            record = await app.get(blocked)
            return record.state is TaskState.QUEUED and record.run_at > app.clock.now()

        await wait_for(snoozed, what="the task to be snoozed")
    record = await app.get(blocked)
    assert record.state is TaskState.QUEUED
    assert record.attempt == 0  # no attempt burned
    assert record.history == []  # and no history line
    assert record.result is None
    assert len(BOARD.events("run")) == 5  # the handler was not called for it


async def test_refused_input_does_not_open_the_breaker() -> None:
    app = build_app()
    refused = [await app.submit("no.retry") for _ in range(8)]
    async with running_worker(app, workers=1) as worker:
        records = await finished(app, refused)
        assert worker.breakers.get("no.retry").is_closed
    assert {r.state for r in records} == {TaskState.DEAD}
    assert len(BOARD.events("run")) == 8  # every one ran: none was snoozed


async def test_a_snoozed_task_runs_once_the_breaker_lets_a_probe_through() -> None:
    clock = FakeClock()
    app = build_app(clock=clock)
    failing = [await app.submit("fail.until", {"succeed_on": 99}, max_attempts=1) for _ in range(5)]
    async with running_worker(app, workers=1) as worker:
        await finished(app, failing)
        later = await app.submit("fail.until", {"succeed_on": 1})
        await wait_for(
            lambda: worker.completer.settled == 6 and not worker.pool.held, what="the snooze"
        )
        record = await app.get(later)
        assert (record.state, record.attempt) == (TaskState.QUEUED, 0)
        clock.advance(31)  # past the breaker's open period: the snooze is due, a probe may go
        [record] = await finished(app, [later])
        assert record.state is TaskState.SUCCEEDED
        assert record.attempt == 1
        assert [h.status for h in record.history] == [ResultStatus.SUCCESS]
        assert worker.breakers.get("fail.until").is_closed  # the probe closed it


async def test_result_waits_for_the_task() -> None:
    app = build_app()
    task_id = await app.submit("sleep.async", 0.05)
    async with running_worker(app):
        result = await asyncio.wait_for(app.result(task_id), 5)
    assert result.data == "slept"
    assert result.attempt == 1


async def test_the_watchdog_names_the_run_that_blocks_the_loop() -> None:
    app = build_app()

    @app.task("block.loop")
    async def block(payload: float) -> None:
        time.sleep(payload)  # noqa: ASYNC251 (the point: a handler that holds the loop)

    task_id = await app.submit("block.loop", 3.0, timeout=0.2, max_attempts=1)
    worker = app.engine(watchdog_margin=0.5)
    assert worker.watchdog is not None
    stalls: list[tuple[Stall, str]] = []
    worker.watchdog.on_stall = lambda stall, stack: stalls.append((stall, stack))
    worker.watchdog.tick = 0.1
    await worker.start()
    try:
        await finished(app, [task_id])
    finally:
        await worker.stop()
    [(stall, stack)] = stalls  # one look past the limit ends the watch (it would exit)
    assert stall.culprit is not None
    assert (stall.culprit.task_id, stall.culprit.task_type) == (task_id, "block.loop")
    assert stall.culprit.worker_id == f"{worker.instance}/w1"
    assert stall.limit == 0.2 + 0.5
    assert "time.sleep(payload)" in stack
