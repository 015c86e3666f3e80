"""Conformance: progress reports (fenced by the lease token, read back with `get`) and the
traceback of a failed attempt kept in its history line."""

from __future__ import annotations

from msgspec.structs import replace

from taskengine.brokers import BrokerBackend, CancelResult
from taskengine.clock import FakeClock
from taskengine.model import OutcomeKind, Progress, ProgressReport, TaskState
from tests.brokers.support import Tasks, outcome

TRACEBACK = "Traceback (most recent call last):\n  File \"h.py\", line 3\nKeyError: 'pages'\n"


def report(
    lease_id: str, token: str, done: int, at: float, note: str | None = None
) -> ProgressReport:
    """A report of `done` of 10 for one task."""
    return ProgressReport(
        task_id=lease_id,
        token=token,
        progress=Progress(done=done, total=10, note=note, at=at, attempt=1),
    )


async def test_progress_of_a_held_lease_is_stored_and_read_back(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)
    first, second = await broker.reserve("w", 2, 30.0, now)

    applied = await broker.record_progress(
        [
            report(first.task_id, first.token, 3, now, "page 3"),
            report(second.task_id, second.token, 7, now),
        ],
        clock.advance(1),
    )

    assert applied == [True, True]
    one, two = await broker.get([first.task_id, second.task_id])
    assert one is not None and two is not None
    assert one.progress == Progress(done=3, total=10, note="page 3", at=now, attempt=1)
    assert two.progress == Progress(done=7, total=10, note=None, at=now, attempt=1)


async def test_a_later_report_replaces_the_earlier_one(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    await broker.record_progress([report(lease.task_id, lease.token, 3, now)], now)

    later = clock.advance(1)
    assert await broker.record_progress([report(lease.task_id, lease.token, 9, later)], later) == [
        True
    ]

    [record] = await broker.get([lease.task_id])
    assert record is not None and record.progress is not None
    assert (record.progress.done, record.progress.at) == (9, later)


async def test_progress_under_a_stale_token_is_dropped(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue(tasks.many(2, now), now)
    held, expired = await broker.reserve("w", 2, 30.0, now)
    await broker.extend([held], 30.0, clock.advance(20))
    await broker.requeue_expired(clock.advance(20), 100)  # `expired` ran out
    [again] = await broker.reserve("w2", 1, 30.0, clock.now())
    assert again.task_id == expired.task_id

    applied = await broker.record_progress(
        [
            report(expired.task_id, expired.token, 5, clock.now()),  # the old lease's
            report(held.task_id, "not-the-token", 5, clock.now()),
            report("no-such-task", held.token, 5, clock.now()),
        ],
        clock.now(),
    )

    assert applied == [False, False, False]
    records = await broker.get([held.task_id, expired.task_id])
    assert [r.progress for r in records if r is not None] == [None, None]


async def test_progress_after_settle_is_dropped_and_the_last_report_is_kept(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    await broker.record_progress([report(lease.task_id, lease.token, 4, now)], now)
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, now)], clock.advance(1))

    late = await broker.record_progress(
        [report(lease.task_id, lease.token, 10, clock.now())], clock.now()
    )

    assert late == [False]
    [record] = await broker.get([lease.task_id])
    assert record is not None and record.state is TaskState.SUCCEEDED
    assert record.progress is not None and record.progress.done == 4


async def test_progress_of_a_task_cancelled_while_queued_is_dropped(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    [task] = [tasks(now)]
    await broker.enqueue([task], now)
    assert await broker.cancel([task.id], now) == [CancelResult.CANCELLED]

    assert await broker.record_progress([report(task.id, "any", 1, now)], now) == [False]


async def test_an_empty_progress_batch_is_nothing(broker: BrokerBackend, clock: FakeClock) -> None:
    assert await broker.record_progress([], clock.now()) == []


async def test_a_failed_attempt_keeps_its_traceback_in_its_history_line(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    failed = outcome(OutcomeKind.RETRY, lease, now, run_at=now, error="KeyError: 'pages'")
    await broker.settle([replace(failed, traceback=TRACEBACK)], clock.advance(1))
    [again] = await broker.reserve("w", 1, 30.0, clock.now())
    dead = outcome(OutcomeKind.DEAD, again, clock.now(), error="KeyError: 'pages'")
    await broker.settle([replace(dead, traceback=TRACEBACK + "again\n")], clock.advance(1))

    [record] = await broker.get([lease.task_id])

    assert record is not None
    assert [(line.attempt, line.traceback) for line in record.history] == [
        (1, TRACEBACK),
        (2, TRACEBACK + "again\n"),
    ]


async def test_a_cancel_honoured_at_settle_keeps_the_runs_traceback(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    await broker.cancel([lease.task_id], now)
    failed = outcome(OutcomeKind.RETRY, lease, now, run_at=now, error="boom")
    await broker.settle([replace(failed, traceback=TRACEBACK)], clock.advance(1))

    [record] = await broker.get([lease.task_id])

    assert record is not None and record.state is TaskState.CANCELLED
    assert [line.traceback for line in record.history] == [TRACEBACK]


async def test_the_next_lease_carries_the_last_progress_as_get_does(
    broker: BrokerBackend, clock: FakeClock, tasks: Tasks
) -> None:
    now = clock.now()
    await broker.enqueue([tasks(now)], now)
    [lease] = await broker.reserve("w", 1, 30.0, now)
    await broker.record_progress([report(lease.task_id, lease.token, 6, now, "six")], now)
    await broker.settle([outcome(OutcomeKind.RETRY, lease, now, run_at=now)], clock.advance(1))

    [again] = await broker.reserve("w", 1, 30.0, clock.now())

    [record] = await broker.get([lease.task_id])
    assert record is not None and record.progress is not None
    assert again.record.progress == record.progress
    assert (record.progress.done, record.progress.note) == (6, "six")
