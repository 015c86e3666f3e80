"""Every run ends in a recorded outcome: results no broker can store, handlers that raise
BaseException or unprintable errors, and cancels met by retry, snooze or a swallowed cancel."""

from __future__ import annotations

import asyncio

import pytest

from taskengine.brokers import CancelResult
from taskengine.model import ResultStatus, TaskResult, TaskState
from taskengine.model import outcome as outcomes
from taskengine.runtime.completer import Completer
from taskengine.runtime.engine import Engine
from taskengine.testing import running_worker
from tests.runtime.apps import BOARD, FlakyBroker, build_app, finished, wait_for
from tests.runtime.conftest import MakeApp


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_a_result_no_broker_can_store_fails_alone_and_the_rest_settle(
    app_on: MakeApp,
) -> None:
    app = await app_on()
    bad = [
        await app.submit("huge.int", max_attempts=1),
        await app.submit("lone.surrogate", max_attempts=1),
    ]
    good = [await app.submit("quick", n) for n in range(20)]
    async with running_worker(app, workers=4):
        records = await finished(app, bad + good, timeout=20)
    by_id = {r.id: r for r in records}
    for task_id in bad:
        record = by_id[task_id]
        assert record.state is TaskState.DEAD
        assert record.result is not None and record.result.status is ResultStatus.FAILURE
        assert "cannot be stored" in (record.result.error or "")
        assert record.attempt == 1
    assert [by_id[i].result.data for i in good] == list(range(20))  # type: ignore[union-attr]


async def test_a_result_over_the_cap_fails_at_once_with_a_clear_error(app_on: MakeApp) -> None:
    """The default cap (TASKENGINE_MAX_RESULT_BYTES, 1 MiB): a bigger result is not stored, and
    its attempt fails for good (the same handler returns the same result on every retry)."""
    app = await app_on()
    big = await app.submit("big.result", 1024 * 1024 + 1, max_attempts=5)
    fits = await app.submit("big.result", 1024 * 1024 - 100)
    async with running_worker(app, workers=2):
        by_id = {r.id: r for r in await finished(app, [big, fits], timeout=30)}
    record = by_id[big]
    assert (record.state, record.attempt) == (TaskState.DEAD, 1)
    assert record.result is not None and record.result.data is None
    error = record.result.error or ""
    assert "ResultTooLarge" in error and "over the 1048576-byte cap" in error, error
    assert "TASKENGINE_MAX_RESULT_BYTES" in error
    assert by_id[fits].state is TaskState.SUCCEEDED


async def test_an_error_over_the_cap_is_stored_truncated_with_a_marker(app_on: MakeApp) -> None:
    app = await app_on(max_result_bytes=10_000)
    task_id = await app.submit("big.error", 50_000, max_attempts=1)
    async with running_worker(app):
        [record] = await finished(app, [task_id], timeout=20)
    assert record.state is TaskState.DEAD
    assert record.result is not None
    for error in (record.result.error or "", record.history[0].error or ""):
        assert error.startswith("ValueError: éé"), error[:50]
        assert len(error.encode()) <= 10_000
        assert " [truncated from 100012 bytes to " in error, error[-200:]


async def test_an_error_message_with_a_lone_surrogate_is_stored_escaped(app_on: MakeApp) -> None:
    app = await app_on()
    task_id = await app.submit("surrogate.error", max_attempts=1)
    async with running_worker(app):
        [record] = await finished(app, [task_id], timeout=20)
    assert record.state is TaskState.DEAD
    assert record.result is not None
    assert "half a pair: \\ud800" in (record.result.error or "")


@pytest.mark.parametrize("kind", ["raise.cancelled", "raise.keyboard.interrupt", "exit.thread"])
async def test_a_handler_raising_a_base_exception_fails_its_attempt_and_the_worker_goes_on(
    app_on: MakeApp, kind: str
) -> None:
    app = await app_on()
    task_id = await app.submit(kind, max_attempts=2)
    async with running_worker(app, workers=1) as worker:
        [record] = await finished(app, [task_id], timeout=20)
        after = await app.submit("quick", "still working")
        [later] = await finished(app, [after], timeout=20)
        assert worker.pool.busy == 0 and not worker.pool.held
    assert (record.state, record.attempt) == (TaskState.DEAD, 2)
    assert [h.status for h in record.history] == [ResultStatus.FAILURE] * 2
    assert later.state is TaskState.SUCCEEDED


async def test_an_unprintable_error_still_spends_the_attempt(app_on: MakeApp) -> None:
    app = await app_on()
    task_id = await app.submit("unprintable.error", max_attempts=3)
    async with running_worker(app):
        [record] = await finished(app, [task_id], timeout=20)
    assert (record.state, record.attempt) == (TaskState.DEAD, 3)
    assert [a for _, a in BOARD.events("run")] == [1, 2, 3]
    assert record.result is not None and "Unprintable" in (record.result.error or "")


@pytest.mark.parametrize("ending", ["return", "retry", "snooze"])
async def test_a_cancel_asked_while_running_ends_the_task_cancelled_whatever_the_run_did(
    app_on: MakeApp, ending: str
) -> None:
    app = await app_on()
    task_id = await app.submit("swallow.cancel", {"key": "s", "result": ending})
    async with running_worker(app):
        await asyncio.wait_for(BOARD.started("s").wait(), 10)
        assert await app.cancel(task_id) is CancelResult.REQUESTED
        [record] = await finished(app, [task_id], timeout=20)
    assert record.state is TaskState.CANCELLED
    assert BOARD.events("swallowed") == [("s", 1)]
    assert BOARD.events("start") == [("s", 1)]  # never run again


async def test_a_cancel_reaches_a_run_that_swallowed_its_timeout(app_on: MakeApp) -> None:
    app = await app_on()
    task_id = await app.submit("swallow.every.cancel", {"key": "t"}, timeout=0.2)
    async with running_worker(app) as worker:
        await wait_for(lambda: BOARD.events("swallowed") != [], 10, "the timeout swallowed")
        assert await app.cancel(task_id) is CancelResult.REQUESTED
        await wait_for(lambda: len(BOARD.events("swallowed")) >= 2, 10, "the cancel delivered")
        BOARD.release("t").set()
        [record] = await finished(app, [task_id], timeout=20)
        assert not worker.pool.held
    assert record.state is TaskState.CANCELLED


async def test_an_outcome_no_broker_can_store_fails_alone_in_its_batch(app_on: MakeApp) -> None:
    """The completer's own guard, for outcomes built past the runner's check."""
    app = await app_on()
    ids = [await app.submit("quick", n) for n in range(3)]
    leases = await app.broker.reserve("w", 3, 30.0, app.clock.now())
    completer = Completer(app.broker, app.clock)
    for n, lease in enumerate(leases):
        data = 10**30 if n == 1 else n
        result = TaskResult(
            task_id=lease.task_id,
            status=ResultStatus.SUCCESS,
            data=data,
            completed_at=app.clock.now(),
            attempt=1,
        )
        completer.add(outcomes.succeeded(lease, result))
    await completer.start()
    await asyncio.wait_for(completer.stop(), 30)
    records = {r.id: r for r in [await app.get(i) for i in ids]}
    assert completer.pending == 0
    poisoned = records.pop(leases[1].task_id)
    assert {r.state for r in records.values()} == {TaskState.SUCCEEDED}
    assert poisoned.result is not None
    if poisoned.state is TaskState.SUCCEEDED:  # the memory broker keeps Python objects as they are
        assert poisoned.result.data == 10**30
    else:
        assert poisoned.state is TaskState.DEAD
        assert "could not be stored" in (poisoned.result.error or "")


async def test_readiness_says_so_while_settles_fail() -> None:
    app = build_app()
    flaky = FlakyBroker(app.broker)
    await app.start()
    worker = Engine(flaky, app.registry, app.settings, clock=app.clock)  # type: ignore[arg-type]
    await worker.start()
    try:
        assert set(worker.health().values()) == {"ok"}
        flaky.fail_settles = 1_000
        task_id = await app.submit("quick", 1)
        await wait_for(lambda: worker.completer.failing > 0, what="a failed settle")
        assert worker.health()["settle"].startswith("failing")
        flaky.fail_settles = 0
        await finished(app, [task_id], timeout=20)
        await wait_for(lambda: worker.health()["settle"] == "ok", what="settles again")
    finally:
        await worker.stop()
        await app.close()
