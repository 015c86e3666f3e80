"""What only the SQLite broker promises: WAL, settings, group commit, durability, processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from msgspec.structs import replace

from taskengine.brokers.sqlite import SqliteBroker
from taskengine.brokers.sqlite import connection as sqlite_broker
from taskengine.brokers.sqlite.schema import SCHEMA_VERSION
from taskengine.errors import BrokerUnavailable, ConfigurationError, QueueFull, ValidationError
from taskengine.model import (
    Outcome,
    OutcomeKind,
    Progress,
    ProgressReport,
    Task,
    TaskState,
    new_task,
)
from taskengine.model.limits import Limit, LimitScope
from taskengine.model.unique import UniqueLock
from tests.brokers.support import T0, outcome


def make_tasks(count: int, now: float = T0, start: int = 0) -> list[Task]:
    return [new_task("demo.echo", {"n": start + i}, now=now) for i in range(count)]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
async def broker(db: str) -> AsyncIterator[SqliteBroker]:
    b = SqliteBroker(db)
    await b.start()
    yield b
    await b.close()


async def pragma(broker: SqliteBroker, name: str) -> object:
    """Read a PRAGMA on the broker's own write connection (settings are per connection)."""
    writer = broker._write()
    return await writer.submit(
        lambda conn: conn.execute(f"PRAGMA {name}").fetchone()[0], in_transaction=False
    )


async def test_wal_and_schema_version_are_recorded(broker: SqliteBroker, db: str) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert await pragma(broker, "synchronous") == 2  # FULL
    assert await pragma(broker, "busy_timeout") == 5000


@pytest.mark.parametrize(("mode", "number"), [("OFF", 0), ("normal", 1), ("EXTRA", 3)])
async def test_synchronous_setting_is_honoured(db: str, mode: str, number: int) -> None:
    broker = SqliteBroker(db, synchronous=mode, busy_timeout_ms=1234)
    await broker.start()
    try:
        assert await pragma(broker, "synchronous") == number
        assert await pragma(broker, "busy_timeout") == 1234
    finally:
        await broker.close()


@pytest.mark.parametrize(
    "options", [{"synchronous": "SOMETIMES"}, {"busy_timeout_ms": -1}, {"max_depth": 0}]
)
def test_bad_settings_are_refused(db: str, options: dict[str, object]) -> None:
    with pytest.raises((ConfigurationError, ValidationError)):
        SqliteBroker(db, **options)  # type: ignore[arg-type]


def test_memory_database_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        SqliteBroker(":memory:")


async def test_newer_schema_is_refused(db: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigurationError):
        await SqliteBroker(db).start()


async def test_a_version_1_store_is_upgraded_and_keeps_its_tasks(db: str) -> None:
    old = SqliteBroker(db)
    await old.start()
    [task] = make_tasks(1)
    await old.enqueue([task], T0)
    await old.close()
    with sqlite3.connect(db) as conn:  # the store as a version 1 build left it
        _drop_version_6(conn)
        conn.execute("ALTER TABLE tasks DROP COLUMN progress")
        conn.execute("DROP INDEX tasks_kept")
        conn.execute("ALTER TABLE tasks DROP COLUMN keep_result")
        conn.execute("ALTER TABLE tasks DROP COLUMN trace")
        conn.execute("PRAGMA user_version = 1")

    broker = SqliteBroker(db)
    await broker.start()
    try:
        [record] = await broker.get([task.id])
        assert record is not None and record.trace is None
        traced = new_task("demo.echo", now=T0, trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01")
        await broker.enqueue([traced], T0)
        [stored] = await broker.get([traced.id])
        assert stored is not None and stored.trace == traced.trace
    finally:
        await broker.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


async def test_a_version_2_store_is_upgraded_to_keep_results_per_task(db: str) -> None:
    old = SqliteBroker(db)
    await old.start()
    [task] = make_tasks(1)
    await old.enqueue([task], T0)
    await old.close()
    with sqlite3.connect(db) as conn:  # the store as a version 2 build left it
        _drop_version_6(conn)
        conn.execute("ALTER TABLE tasks DROP COLUMN progress")
        conn.execute("DROP INDEX tasks_kept")
        conn.execute("ALTER TABLE tasks DROP COLUMN keep_result")
        conn.execute("PRAGMA user_version = 2")

    broker = SqliteBroker(db)
    await broker.start()
    try:
        [record] = await broker.get([task.id])
        assert record is not None and record.keep_result is None  # the global retention
        kept = new_task("demo.echo", now=T0, keep_result=60)
        await broker.enqueue([kept], T0)
        [stored] = await broker.get([kept.id])
        assert stored is not None and stored.keep_result == 60.0
    finally:
        await broker.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_version_3_store_is_upgraded_and_takes_progress(db: str) -> None:
    old = SqliteBroker(db)
    await old.start()
    [task] = make_tasks(1)
    await old.enqueue([task], T0)
    await old.close()
    with sqlite3.connect(db) as conn:  # the store as a version 3 build left it
        _drop_version_6(conn)
        conn.execute("ALTER TABLE tasks DROP COLUMN progress")
        conn.execute("PRAGMA user_version = 3")

    broker = SqliteBroker(db)
    await broker.start()
    try:
        [lease] = await broker.reserve("w", 1, 30.0, T0)
        report = ProgressReport(
            task_id=task.id, token=lease.token, progress=Progress(done=1, total=2, at=T0)
        )
        assert await broker.record_progress([report], T0) == [True]
        [record] = await broker.get([task.id])
        assert record is not None and record.progress == report.progress
    finally:
        await broker.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


def _drop_version_6(conn: sqlite3.Connection) -> None:
    """Take out what schema version 6 added (dependencies, ADR 0037), last column first."""
    conn.execute("DROP INDEX tasks_workflow")
    conn.execute("DROP TABLE waits")
    for column in ("waiting", "workflow", "on_parent_failure", "depends_on"):
        conn.execute(f"ALTER TABLE tasks DROP COLUMN {column}")


async def test_a_version_5_store_is_upgraded_and_takes_dependencies(db: str) -> None:
    old = SqliteBroker(db)
    await old.start()
    [task] = make_tasks(1)
    await old.enqueue([task], T0)
    await old.close()
    with sqlite3.connect(db) as conn:  # the store as a version 5 build left it
        _drop_version_6(conn)
        conn.execute("PRAGMA user_version = 5")

    broker = SqliteBroker(db)
    await broker.start()
    try:
        [record] = await broker.get([task.id])
        assert record is not None and record.depends_on == () and record.waiting == 0
        child = new_task("demo.echo", now=T0, depends_on=[task.id], keep_result=60)
        await broker.enqueue([child], T0)
        [stored] = await broker.get([child.id])
        assert stored is not None and stored.state is TaskState.BLOCKED
        assert stored.depends_on == (task.id,) and stored.keep_result == 60.0
    finally:
        await broker.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


async def test_a_version_5_store_gains_limits_and_unique_locks(db: str) -> None:
    old = SqliteBroker(db)
    await old.start()
    tasks = make_tasks(3)
    await old.enqueue(tasks, T0)
    await old.close()
    with sqlite3.connect(db) as conn:  # the store as a version 5 build left it
        conn.execute("DROP TRIGGER unique_locks_gone")
        conn.execute("DROP TABLE unique_locks")
        conn.execute("DROP TABLE limits")
        conn.execute("PRAGMA user_version = 5")

    broker = SqliteBroker(db)
    await broker.start()
    try:
        await broker.set_limits([Limit(scope=LimitScope.TYPE, name="demo.echo", max_concurrency=2)])
        assert len(await broker.reserve("w", 3, 30.0, T0)) == 2
        lock = UniqueLock(key="k", states=(TaskState.QUEUED,))
        [first, again] = await broker.enqueue(make_tasks(2, start=10), T0, [lock, lock])
        assert first.created and not again.created and again.id == first.id
        assert await _depth_and_count(db) == (2, 2)
    finally:
        await broker.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_depth_counter_stays_exact_under_limits_and_unique_locks(
    broker: SqliteBroker, db: str
) -> None:
    await broker.set_limits(
        [Limit(scope=LimitScope.TYPE, name="demo.echo", max_concurrency=3, rate=100.0, burst=5)]
    )
    lock = UniqueLock(key="one", seconds=60.0)
    await broker.enqueue(make_tasks(6), T0, [lock, lock, None, None, None, None])
    assert await _depth_and_count(db) == (5, 5)  # the second lock holder was refused
    assert len(await broker.reserve("w", 6, 30.0, T0)) == 3  # max_concurrency
    assert await _depth_and_count(db) == (2, 2)
    await broker.set_limits([Limit(scope=LimitScope.TYPE, name="demo.echo")])  # removed
    assert len(await broker.reserve("w", 6, 30.0, T0)) == 2
    assert await _depth_and_count(db) == (0, 0)


async def test_concurrent_writes_share_one_commit(broker: SqliteBroker) -> None:
    before = broker.commit_count
    batches = [make_tasks(2, start=10 * i) for i in range(50)]
    results = await asyncio.gather(*(broker.enqueue(batch, T0) for batch in batches))
    assert all(r.created for batch in results for r in batch)
    # 50 calls, each its own transaction without group commit; a handful with it.
    assert broker.commit_count - before <= 5
    leases = await broker.reserve("w", 100, 30.0, T0)
    before = broker.commit_count
    outcomes = [outcome(OutcomeKind.SUCCEEDED, lease, T0 + 1) for lease in leases]
    applied = await asyncio.gather(*(broker.settle([o], T0 + 1) for o in outcomes))
    assert all(ok == [True] for ok in applied)
    assert broker.commit_count - before <= 5


async def test_a_failing_call_does_not_undo_its_group(db: str) -> None:
    broker = SqliteBroker(db, max_depth=5)
    await broker.start()
    try:
        fits, too_many = make_tasks(3), make_tasks(3, start=100)
        answers = await asyncio.gather(
            broker.enqueue(fits, T0), broker.enqueue(too_many, T0), return_exceptions=True
        )
        assert isinstance(answers[1], QueueFull)
        assert [r.created for r in answers[0]] == [True, True, True]  # type: ignore[union-attr]
        assert await broker.get([t.id for t in too_many]) == [None, None, None]
        assert len(await broker.reserve("w", 10, 30.0, T0)) == 3
    finally:
        await broker.close()


async def test_depth_counter_matches_the_table(broker: SqliteBroker, db: str) -> None:
    await broker.enqueue(make_tasks(20), T0)
    leases = await broker.reserve("w", 7, 30.0, T0)
    await broker.cancel([leases[0].task_id], T0)
    await broker.requeue_expired(T0 + 60, 3)
    with sqlite3.connect(db) as conn:
        counted = conn.execute("SELECT count(*) FROM tasks WHERE state = 'queued'").fetchone()[0]
        kept = conn.execute("SELECT queued FROM depth").fetchone()[0]
    assert counted == kept == 20 - 7 + 2  # the first lease was cancelled, not requeued


async def _depth_and_count(db: str) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        counted = conn.execute("SELECT count(*) FROM tasks WHERE state = 'queued'").fetchone()[0]
        kept = conn.execute("SELECT queued FROM depth").fetchone()[0]
    return int(kept), int(counted)


async def test_depth_counter_stays_exact_through_every_change_of_state(
    broker: SqliteBroker, db: str
) -> None:
    tasks = make_tasks(12)
    await broker.enqueue(tasks + tasks[:2], T0)  # two duplicates: not counted again
    assert await _depth_and_count(db) == (12, 12)
    leases = await broker.reserve("w", 8, 30.0, T0)
    assert await _depth_and_count(db) == (4, 4)
    waiting = next(t.id for t in tasks if t.id not in {lease.task_id for lease in leases})
    await broker.cancel([leases[5].task_id, waiting], T0)  # one running, one queued
    assert await _depth_and_count(db) == (3, 3)
    kinds = [OutcomeKind.RETRY, OutcomeKind.SNOOZE, OutcomeKind.RELEASED, OutcomeKind.SUCCEEDED]
    batch = [
        outcome(kind, lease, T0 + 1, run_at=T0 + 1 if kind in _REQUEUE_AT else None)
        for kind, lease in zip(kinds, leases, strict=False)
    ]
    batch.append(outcome(OutcomeKind.RETRY, leases[5], T0 + 1, run_at=T0 + 1))  # cancelled
    batch.append(outcome(OutcomeKind.DEAD, leases[4], T0 + 1))
    assert all(await broker.settle(batch, T0 + 1))
    assert await _depth_and_count(db) == (6, 6)
    await broker.replay([leases[4].task_id, leases[5].task_id, waiting], T0 + 2)
    assert await _depth_and_count(db) == (9, 9)
    assert len(await broker.requeue_expired(T0 + 60, 10)) == 2  # leases 6 and 7
    assert await _depth_and_count(db) == (11, 11)
    await broker.purge(list(TaskState), T0 + 100, 100)
    assert await _depth_and_count(db) == (11, 11)
    await _dependencies_keep_the_depth_exact(broker, db)


async def _dependencies_keep_the_depth_exact(broker: SqliteBroker, db: str) -> None:
    """Blocked tasks are not queued: enqueue, release, cancel and replay of them keep depth."""
    later = T0 + 200
    first, second = (new_task("demo.echo", now=later) for _ in range(2))
    both = new_task("demo.echo", now=later, depends_on=[first.id, second.id])
    one = new_task("demo.echo", now=later, depends_on=[first.id])
    await broker.enqueue([first, second, both, one], later)
    assert await _depth_and_count(db) == (13, 13)  # the dependents are blocked
    leases = {lease.task_id: lease for lease in await broker.reserve("w", 50, 30.0, later)}
    assert await _depth_and_count(db) == (0, 0)
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, leases[first.id], later)], later)
    assert await _depth_and_count(db) == (1, 1)  # `one` released; `both` waits for `second`
    await broker.settle([outcome(OutcomeKind.DEAD, leases[second.id], later)], later)
    assert await _depth_and_count(db) == (1, 1)  # `both` cancelled from blocked
    grandchild = new_task("demo.echo", now=later, depends_on=[one.id])
    await broker.enqueue([grandchild], later)
    await broker.cancel([grandchild.id], later)  # cancelled from blocked
    assert await _depth_and_count(db) == (1, 1)
    await broker.replay([grandchild.id], later)  # blocked again: `one` is still queued
    [record] = await broker.get([grandchild.id])
    assert record is not None and record.state is TaskState.BLOCKED
    assert await _depth_and_count(db) == (1, 1)
    [lease] = await broker.reserve("w", 5, 30.0, later)
    await broker.settle([outcome(OutcomeKind.RETRY, lease, later, run_at=later)], later)
    [lease] = await broker.reserve("w", 5, 30.0, later)
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, later)], later)  # read first
    assert await _depth_and_count(db) == (1, 1)  # the grandchild released


_REQUEUE_AT = {OutcomeKind.RETRY, OutcomeKind.SNOOZE}


async def test_data_survives_close_and_reopen(db: str) -> None:
    broker = SqliteBroker(db)
    await broker.start()
    tasks = make_tasks(10)
    pending = asyncio.ensure_future(broker.enqueue(tasks, T0))
    await asyncio.sleep(0)  # submitted, maybe not yet committed
    await broker.close()  # flushes what was submitted
    assert all(r.created for r in pending.result())
    with pytest.raises(BrokerUnavailable):
        await broker.reserve("w", 1, 30.0, T0)
    again = SqliteBroker(db)
    await again.start()
    try:
        records = await again.get([t.id for t in tasks])
        assert [r.payload if r else None for r in records] == [{"n": i} for i in range(10)]
    finally:
        await again.close()


async def test_reserve_uses_the_ready_index(broker: SqliteBroker, db: str) -> None:
    from taskengine.brokers.sqlite.queries import RESERVE

    select = RESERVE[RESERVE.index("SELECT rowid") : RESERVE.index("RETURNING")].rstrip()[:-1]
    with sqlite3.connect(db) as conn:
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN {select}",
            {"now": T0, "max_key": T0 + 60, "queues": None, "limit": 10},
        ).fetchall()
    details = " | ".join(row[-1] for row in plan)
    assert "tasks_ready" in details
    assert "TEMP B-TREE" not in details  # the index gives the order: no sort


async def test_wait_for_work_sees_another_connection(broker: SqliteBroker, db: str) -> None:
    await broker.reserve("w", 1, 30.0, T0)  # the baseline: nothing new since this
    started = time.monotonic()
    await broker.wait_for_work(0.1)
    assert time.monotonic() - started >= 0.09
    other = SqliteBroker(db)
    await other.start()
    try:
        waiter = asyncio.ensure_future(broker.wait_for_work(5.0))
        await asyncio.sleep(0.05)
        await other.enqueue(make_tasks(1), T0)
        started = time.monotonic()
        await asyncio.wait_for(waiter, 1.0)
        assert time.monotonic() - started < 0.5
    finally:
        await other.close()


def _enqueue_one(path: str) -> None:
    async def run() -> None:
        broker = SqliteBroker(path)
        await broker.start()
        try:
            await broker.enqueue(make_tasks(1), T0)
        finally:
            await broker.close()

    asyncio.run(run())


async def test_a_commit_in_another_process_rings_the_waiters(
    broker: SqliteBroker, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiters in other processes are woken by the doorbell, not by polling data_version."""
    monkeypatch.setattr(sqlite_broker, "POLL_INTERVAL", 3600.0)  # the poll never comes
    await broker.reserve("w", 1, 30.0, T0)
    waiter = asyncio.ensure_future(broker.wait_for_work(3600.0))
    try:
        bell = broker._doorbell.directory
        assert bell is not None
        await until(lambda: any(bell.iterdir()))  # this process listens
        process = multiprocessing.get_context("spawn").Process(target=_enqueue_one, args=(db,))
        process.start()
        await asyncio.to_thread(process.join, 60)
        assert process.exitcode == 0
        await asyncio.wait_for(waiter, 30.0)
    finally:
        waiter.cancel()
    await broker.close()
    assert not bell.exists()  # the last broker out leaves nothing behind


async def test_a_commit_that_rang_no_doorbell_still_wakes_a_waiter(db: str) -> None:
    """A commit whose ring was lost (here: the committer has no doorbell) wakes a waiter in
    another connection through the data_version poll."""
    waiter, committer = SqliteBroker(db), SqliteBroker(db)
    await waiter.start()
    await committer.start()
    committer._doorbell.directory = None  # it rings nobody
    try:
        await waiter.reserve("w", 1, 30.0, T0)
        parked = asyncio.ensure_future(waiter.wait_for_work(3600.0))
        await until(lambda: waiter._seen_version is not None)  # it knows the version now
        await committer.enqueue(make_tasks(1), T0)
        await asyncio.wait_for(parked, 30.0)
    finally:
        await committer.close()
        await waiter.close()


async def until(condition: Callable[[], bool], bound: float = 30.0) -> None:
    """Wait until `condition()` holds (checked every 10 ms), failing after `bound` seconds."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _claim_loop(
    path: str, worker: str, ready: Barrier, out: multiprocessing.Queue[list[str]]
) -> None:
    async def run() -> list[str]:
        broker = SqliteBroker(path)
        await broker.start()
        ready.wait(120)  # all claim at once, so they really contend
        claimed: list[str] = []
        try:
            idle, first = 0, True
            while idle < 3:
                leases = await broker.reserve(worker, 10, 30.0, T0 + 1)
                idle = 0 if leases else idle + 1
                if first:
                    # On a loaded machine one process may get the CPU long enough to take
                    # all 2,000 while the others wait for it: each waits here after its
                    # first claim, so all of them contend for the rest.
                    ready.wait(120)
                    first = False
                claimed.extend(lease.task_id for lease in leases)
        finally:
            await broker.close()
        return claimed

    out.put(asyncio.run(run()))


@pytest.mark.slow
async def test_processes_never_double_claim(db: str) -> None:
    seeder = SqliteBroker(db)
    await seeder.start()
    tasks = make_tasks(2000)
    for i in range(0, len(tasks), 500):
        await seeder.enqueue(tasks[i : i + 500], T0)
    await seeder.close()

    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[str]] = ctx.Queue()
    ready = ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_loop, args=(db, f"p{i}", ready, out)) for i in range(4)]
    for proc in procs:
        proc.start()
    loop = asyncio.get_running_loop()
    claimed = [await loop.run_in_executor(None, out.get, True, 120) for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    union = [task_id for part in claimed for task_id in part]
    assert len(union) == len(set(union)), "a task was claimed twice"
    assert set(union) == {t.id for t in tasks}
    assert sum(1 for part in claimed if part) >= 2  # they did compete


async def _statements_of(broker: SqliteBroker, call: Callable[[], object]) -> list[str]:
    """The SQL the writer connection ran while `call` was awaited."""
    seen: list[str] = []
    writer = broker._write()
    await writer.submit(lambda conn: conn.set_trace_callback(seen.append), in_transaction=False)
    try:
        await call()  # type: ignore[misc]
    finally:
        await writer.submit(lambda conn: conn.set_trace_callback(None), in_transaction=False)
    return seen


async def test_a_batch_of_successes_is_settled_without_reading_the_rows(
    broker: SqliteBroker,
) -> None:
    await broker.enqueue(make_tasks(5), T0)
    leases = await broker.reserve("w1", 5, 30.0, T0 + 1)
    outcomes = [outcome(OutcomeKind.SUCCEEDED, lease, T0 + 2) for lease in leases]

    seen = await _statements_of(broker, lambda: broker.settle(outcomes, T0 + 2))

    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    # Only the waits index is read (do any of them have dependents to release?), no task row.
    assert all("FROM waits WHERE parent IN" in s and "tasks" not in s for s in reads)
    records = await broker.get([lease.task_id for lease in leases])
    assert [r.state if r else None for r in records] == [TaskState.SUCCEEDED] * 5
    assert all(r and r.result and r.result.attempt == 1 for r in records)
    assert all(r and [h.attempt for h in r.history] == [1] for r in records)


async def test_a_result_that_misnames_its_attempt_is_stored_with_the_real_one(
    broker: SqliteBroker,
) -> None:
    await broker.enqueue(make_tasks(2), T0)
    leases = await broker.reserve("w1", 2, 30.0, T0 + 1)
    good = outcome(OutcomeKind.SUCCEEDED, leases[0], T0 + 2)
    assert good.result is not None
    wrong = Outcome(
        kind=OutcomeKind.SUCCEEDED,
        task_id=leases[1].task_id,
        token=leases[1].token,
        result=replace(good.result, task_id=leases[1].task_id, attempt=0),
    )

    assert await broker.settle([good, wrong, good], T0 + 2) == [True, True, False]

    records = await broker.get([lease.task_id for lease in leases])
    assert [r.result.attempt if r and r.result else None for r in records] == [1, 1]
    assert [[h.attempt for h in r.history] if r else None for r in records] == [[1], [1]]


async def test_a_mixed_batch_keeps_every_rule_of_settle(broker: SqliteBroker) -> None:
    kept, forgotten, stale = make_tasks(3)
    forgotten = replace(forgotten, keep_result=0.0)
    await broker.enqueue([kept, forgotten, stale], T0)
    leases = {lease.task_id: lease for lease in await broker.reserve("w1", 3, 30.0, T0 + 1)}
    stale_lease = replace(leases[stale.id], token="not-the-token")
    batch = [
        outcome(OutcomeKind.SUCCEEDED, leases[kept.id], T0 + 2),
        outcome(OutcomeKind.SUCCEEDED, leases[forgotten.id], T0 + 2),
        outcome(OutcomeKind.SUCCEEDED, stale_lease, T0 + 2),
    ]

    assert await broker.settle(batch, T0 + 2) == [True, True, False]

    record, gone, running = await broker.get([kept.id, forgotten.id, stale.id])
    assert record is not None and record.state is TaskState.SUCCEEDED
    assert gone is None
    assert running is not None and running.state is TaskState.RUNNING


async def test_a_version_4_store_is_upgraded_and_its_depth_stays_exact(db: str) -> None:
    old = SqliteBroker(db)
    await old.start()
    await old.enqueue(make_tasks(5), T0)
    await old.close()
    with sqlite3.connect(db) as conn:  # the store as a version 4 build left it: depth triggers
        _drop_version_6(conn)
        conn.executescript(_DEPTH_TRIGGERS_OF_VERSION_4)
        conn.execute("PRAGMA user_version = 4")

    broker = SqliteBroker(db)
    await broker.start()
    try:
        await broker.enqueue(make_tasks(3, start=5), T0)
        await broker.reserve("w", 2, 30.0, T0)
        assert await _depth_and_count(db) == (6, 6)
    finally:
        await broker.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6


_DEPTH_TRIGGERS_OF_VERSION_4 = """
CREATE TRIGGER IF NOT EXISTS tasks_depth_insert AFTER INSERT ON tasks
    WHEN new.state = 'queued'
BEGIN
    UPDATE depth SET queued = queued + 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS tasks_depth_leave AFTER UPDATE OF state ON tasks
    WHEN old.state = 'queued' AND new.state <> 'queued'
BEGIN
    UPDATE depth SET queued = queued - 1 WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS tasks_depth_enter AFTER UPDATE OF state ON tasks
    WHEN old.state <> 'queued' AND new.state = 'queued'
BEGIN
    UPDATE depth SET queued = queued + 1 WHERE id = 0;
END;
"""
