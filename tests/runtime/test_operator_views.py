"""The operator's views and bulk actions through `App.inspector`, on every broker under test:
purge a queue, bulk cancel / replay / delete by ids or by filter, scheduled and retrying."""

from __future__ import annotations

from taskengine.brokers import TaskFilter
from taskengine.model import TaskState
from tests.runtime.apps import wait_for
from tests.runtime.conftest import MakeApp


async def test_purge_queue_removes_its_queued_tasks_only(app_on: MakeApp) -> None:
    app = await app_on()
    doomed = [await app.submit("add.async", {"a": i, "b": 1}, queue="purge-me") for i in range(7)]
    kept = await app.submit("add.async", {"a": 0, "b": 1}, queue="other")

    assert await app.inspector.purge_queue("purge-me", batch=3) == 7

    assert [r is None for r in await app.broker.get(doomed)] == [True] * 7
    assert (await app.get(kept)).state is TaskState.QUEUED
    assert await app.inspector.purge_queue("purge-me") == 0


async def test_bulk_actions_by_ids_answer_how_many_they_touched(app_on: MakeApp) -> None:
    app = await app_on()
    ids = [await app.submit("add.async", {"a": i, "b": 1}, queue="bulk") for i in range(5)]

    assert await app.inspector.bulk("cancel", ids=[*ids[:3], "01ARZ3NDEKTSV4RRFFQ69G5FAV"]) == 3
    assert await app.inspector.bulk("cancel", ids=ids[:3]) == 0  # already finished
    assert await app.inspector.bulk("replay", ids=ids[:2]) == 2
    assert await app.inspector.bulk("delete", ids=ids) == 1  # only ids[2] is finished
    states = [None if r is None else r.state for r in await app.broker.get(ids)]
    assert states == [TaskState.QUEUED, TaskState.QUEUED, None, TaskState.QUEUED, TaskState.QUEUED]


async def test_bulk_actions_by_filter_page_through_every_match(app_on: MakeApp) -> None:
    app = await app_on()
    ids = [await app.submit("add.async", {"a": i, "b": 1}, queue="many") for i in range(11)]
    other = await app.submit("add.async", {"a": 0, "b": 1}, queue="spared")
    many = TaskFilter(queues=frozenset({"many"}))

    assert await app.inspector.bulk("cancel", task_filter=many, batch=4) == 11
    assert (await app.get(other)).state is TaskState.QUEUED
    assert await app.inspector.bulk("replay", task_filter=many, batch=4) == 11
    assert await app.inspector.bulk("cancel", task_filter=many, batch=4) == 11
    assert await app.inspector.bulk("delete", task_filter=many, batch=4) == 11
    assert [r is None for r in await app.broker.get(ids)] == [True] * 11


async def test_scheduled_and_retrying_views(app_on: MakeApp) -> None:
    app = await app_on()
    due = await app.submit("add.async", {"a": 1, "b": 1})
    later = [await app.submit("add.async", {"a": i, "b": 1}, delay=3600) for i in range(3)]

    page = await app.inspector.scheduled(TaskFilter(), limit=2, cursor=None)
    newest_first = sorted(later, reverse=True)  # ids made in one millisecond: any order
    assert [r.id for r in page.items] == newest_first[:2]
    rest = await app.inspector.scheduled(TaskFilter(), limit=2, cursor=page.next_cursor)
    assert [r.id for r in rest.items] == newest_first[2:]
    assert due not in [r.id for r in page.items + rest.items]

    engine = app.engine()
    await engine.start()
    try:
        failing = await app.submit("ask.retry", {"delay": 3600.0})

        async def retried() -> bool:
            record = await app.get(failing)
            return record.attempt >= 1 and record.state is TaskState.QUEUED

        await wait_for(retried, 20.0, "a failed attempt to be queued again")
    finally:
        await engine.stop(grace=0)
    retrying = await app.inspector.retrying(TaskFilter(), limit=10, cursor=None)
    assert failing in [r.id for r in retrying.items]
    assert due not in [r.id for r in retrying.items]


async def test_a_bulk_filter_on_states_the_action_cannot_change_touches_nothing(
    app_on: MakeApp,
) -> None:
    app = await app_on()
    task_id = await app.submit("add.async", {"a": 1, "b": 1})
    queued = TaskFilter(states=frozenset({TaskState.QUEUED}))
    assert await app.inspector.bulk("delete", task_filter=queued) == 0
    assert await app.inspector.bulk("replay", task_filter=queued) == 0
    assert (await app.get(task_id)).state is TaskState.QUEUED
