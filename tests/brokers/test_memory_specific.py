"""Memory broker: what only the in-process store has (what it costs the process to hold)."""

from __future__ import annotations

import gc

from taskengine.brokers import TaskFilter
from taskengine.brokers.memory import MemoryBroker
from taskengine.model import OutcomeKind
from tests.brokers.support import T0, Tasks, outcome


async def test_finished_tasks_leave_nothing_for_the_cyclic_gc_to_scan() -> None:
    """A store of a million finished tasks must not make every full collection walk a
    million objects: a record and its history are not tracked once stored."""
    broker = MemoryBroker()
    tasks = Tasks()
    await broker.enqueue([tasks(T0) for _ in range(100)], T0)  # warm-up: the heaps, dicts
    gc.collect()
    before = len(gc.get_objects())

    await broker.enqueue([tasks(T0) for _ in range(1_000)], T0)
    leases = await broker.reserve("w", 2_000, 30.0, T0 + 1)
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, T0 + 1) for lease in leases], T0)
    del leases
    gc.collect()

    assert len(gc.get_objects()) - before < 100


async def test_records_read_back_with_their_history_as_a_list() -> None:
    broker = MemoryBroker()
    tasks = Tasks()
    task = tasks(T0)
    await broker.enqueue([task], T0)
    [queued] = await broker.get([task.id])
    [lease] = await broker.reserve("w", 1, 30.0, T0)
    await broker.settle([outcome(OutcomeKind.SUCCEEDED, lease, T0)], T0)
    [done] = await broker.get([task.id])
    page = await broker.list_tasks(TaskFilter(), 10)

    assert queued is not None and queued.history == []
    assert lease.record.history == []
    assert done is not None and isinstance(done.history, list) and len(done.history) == 1
    assert [type(r.history) for r in page.items] == [list]


def test_a_queued_record_keeps_every_field_of_its_task() -> None:
    """The record is built field by field (for speed): a Task field added later must be copied."""
    import msgspec

    from taskengine.brokers.memory import codec
    from taskengine.model import Task

    names = [field.name for field in msgspec.structs.fields(Task)]
    task = Task(id="x", type="t", created_at=1.0, run_at=1.0)
    record = codec.queued(task, 2.0)
    assert {name: getattr(record, name) for name in names} == msgspec.structs.asdict(task)
    marked = msgspec.structs.replace(task, keep_result=5.0, depends_on=["p"], trace="00-x")
    record = codec.queued(marked, 2.0)
    assert {name: getattr(record, name) for name in names} == msgspec.structs.asdict(marked)
