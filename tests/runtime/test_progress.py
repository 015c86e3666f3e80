"""ctx.progress: reports reach the task's record through the broker, the latest of every run
in one call per flush, from the event loop and from threads; a settled run keeps its last."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from taskengine.errors import ValidationError
from taskengine.model import ProgressReport, TaskState
from taskengine.registry import TaskContext
from taskengine.testing import running_worker
from tests.runtime.apps import BOARD, build_app, finished, wait_for
from tests.runtime.conftest import MakeApp


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_progress_of_every_run_is_written_in_one_broker_call(
    app_on: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await app_on()
    calls: list[int] = []
    record_progress = app.broker.record_progress

    async def counted(reports: Sequence[ProgressReport], now: float) -> list[bool]:
        calls.append(len(reports))
        return await record_progress(reports, now)

    monkeypatch.setattr(app.broker, "record_progress", counted)
    ids = [await app.submit("progress.async", {"key": k}) for k in ("a", "b")]
    async with running_worker(app, workers=2) as engine:
        await engine.progress_flusher.stop()  # the test flushes by hand
        for key in ("a", "b"):
            await wait_for(lambda k=key: BOARD.started(k).is_set(), 20, f"run {key}")
        calls.clear()
        assert await engine.progress_once() == 2
        assert calls == [2]  # six reports, two runs: one call
        for task_id in ids:
            record = await app.get(task_id)
            assert record.state is TaskState.RUNNING and record.progress is not None
            progress = record.progress
            assert (progress.done, progress.total, progress.note) == (3, 3, "step 3")
            assert progress.attempt == 1
        assert await engine.progress_once() == 0 and calls == [2]  # nothing new: no call
        for key in ("a", "b"):
            BOARD.release(key).set()
        records = await finished(app, ids, timeout=20)

    for record in records:  # kept when the task settled
        assert record.state is TaskState.SUCCEEDED
        assert record.progress is not None and record.progress.done == 3


async def test_a_run_that_ends_before_the_flush_keeps_its_last_report(app_on: MakeApp) -> None:
    """The completer writes a settling run's pending report just before its settle (in one
    call for the batch), so a finished task shows how far it got, not an earlier report."""
    app = await app_on()
    ids = [await app.submit("progress.quick", n) for n in (3, 5)]
    async with running_worker(app, workers=2) as engine:
        await engine.progress_flusher.stop()  # only the completer writes
        records = await finished(app, ids, timeout=20)

    assert [(r.progress.done, r.progress.total) for r in records if r.progress] == [(3, 3), (5, 5)]


async def test_a_thread_handler_reports_progress(app_on: MakeApp) -> None:
    app = await app_on()
    task_id = await app.submit("progress.thread", {"key": "t"})
    async with running_worker(app, workers=1) as engine:
        await engine.progress_flusher.stop()
        await wait_for(lambda: bool(BOARD.events("progressed")), 20, "the thread's report")
        assert await engine.progress_once() == 1
        record = await app.get(task_id)
        assert record.progress is not None
        assert (record.progress.done, record.progress.total) == (2, 5)
        assert record.progress.note == "from a thread"
        BOARD.thread_release("t").set()
        await finished(app, [task_id], timeout=20)


async def test_the_engine_flushes_by_itself_within_seconds(app_on: MakeApp) -> None:
    app = await app_on()
    task_id = await app.submit("progress.async", {"key": "s"})
    async with running_worker(app, workers=1):
        await wait_for(lambda: BOARD.started("s").is_set(), 20, "the run")

        async def written() -> bool:
            return (await app.get(task_id)).progress is not None

        await wait_for(written, 20, "the flusher's write")
        BOARD.release("s").set()
        await finished(app, [task_id], timeout=20)


async def test_a_process_handler_reports_progress_from_its_child(tmp_path: Path) -> None:
    app = build_app(processes=True)
    gate = tmp_path / "gate"
    async with app:
        task_id = await app.submit("progress.process", {"steps": 500, "gate": str(gate)})
        async with running_worker(app, workers=1, process_pool=1) as engine:
            await engine.progress_flusher.stop()

            async def first_written() -> bool:
                await engine.progress_once()
                progress = (await app.get(task_id)).progress
                return progress is not None and progress.note == "first"

            await wait_for(first_written, 30, "the child's first report")
            gate.touch()
            [record] = await finished(app, [task_id], timeout=30)

    assert record.state is TaskState.SUCCEEDED
    assert record.progress is not None  # the last report came back with the result
    assert (record.progress.done, record.progress.note) == (500, "step 500")
    assert record.progress.attempt == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [((-1, 3), "done"), ((1, 2.5), "total"), ((True, 3), "done"), ((1, 3, 7), "note")],
)
def test_bad_progress_is_refused(args: tuple[Any, ...], message: str) -> None:
    ctx = TaskContext("t", 1, "w")
    with pytest.raises(ValidationError, match=message):
        ctx.progress(*args)


def test_a_long_note_is_cut() -> None:
    seen: list[tuple[int, int, str | None]] = []
    ctx = TaskContext("t", 1, "w", lambda d, t, n: seen.append((d, t, n)))
    ctx.progress(1, 2, "n" * 500)
    assert seen == [(1, 2, "n" * 200)]
