"""The App as a producer sees it: submit validates against the registry, results, replay."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from taskengine.app import App, TaskRequest
from taskengine.brokers import ReplayResult
from taskengine.errors import IdempotencyConflict, TaskNotFound, ValidationError
from taskengine.model import Priority, ResultStatus, TaskState
from taskengine.registry import InvalidPayload, UnknownTaskType
from taskengine.settings import Settings
from taskengine.testing import drain, running_worker
from tests.runtime.apps import BOARD, build_app, finished


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()


async def test_a_payload_is_validated_against_the_handlers_struct_at_submit() -> None:
    app = build_app()
    for bad in ({"a": "one", "b": 2}, {"a": 1}, {"a": 1, "b": 2, "c": 3}, [1, 2], None):
        with pytest.raises(InvalidPayload) as info:
            await app.submit("add.async", bad)
        assert info.value.code == "invalid_payload"
    counts = await app.broker.counts()
    assert counts == []  # nothing was stored
    task_id = await app.submit("add.async", {"a": 1, "b": 2})
    assert (await app.get(task_id)).payload == {"a": 1, "b": 2}  # stored as plain JSON


async def test_an_unknown_task_type_is_refused() -> None:
    app = build_app()
    with pytest.raises(UnknownTaskType) as info:
        await app.submit("no.such.type", {})
    assert info.value.code == "unknown_task_type"
    assert await app.broker.counts() == []


async def test_a_payload_that_is_not_json_is_refused() -> None:
    app = build_app()
    with pytest.raises(ValidationError):
        await app.submit("quick", {"when": object()})


async def test_a_batch_is_validated_whole_before_anything_is_stored() -> None:
    app = build_app()
    requests = [
        TaskRequest(type="add.async", payload={"a": 1, "b": 2}),
        TaskRequest(type="add.async", payload={"a": "x", "b": 2}),
    ]
    with pytest.raises(InvalidPayload):
        await app.submit_many(requests)
    assert await app.broker.counts() == []
    ids = await app.submit_many([requests[0], TaskRequest(type="quick", payload=[1])])
    assert len(set(ids)) == 2


async def test_a_batch_keeps_its_order_and_each_requests_options() -> None:
    app = build_app()
    ids = await app.submit_many(
        [
            TaskRequest(type="quick", payload=1),
            TaskRequest(type="quick", payload=2, priority="high", queue="q2"),
            TaskRequest(type="add.async", payload={"a": 1, "b": 2}),
            TaskRequest(type="quick", payload=3, idempotency_key="k"),
        ]
    )
    records = [await app.get(task_id) for task_id in ids]
    assert [r.payload for r in records] == [1, 2, {"a": 1, "b": 2}, 3]
    assert [r.priority for r in records] == [Priority.NORMAL, Priority.HIGH] + [Priority.NORMAL] * 2
    assert [r.queue for r in records] == ["default", "q2", "default", "default"]
    assert [r.idempotency_key for r in records] == [None, None, None, "k"]
    created = [r.created_at for r in records]
    assert created == sorted(created) and len(set(ids)) == 4


async def test_a_plain_dict_annotation_takes_any_object_and_refuses_the_rest() -> None:
    app = App(settings=Settings(broker_url="memory://"))

    @app.task("takes.dict")
    async def takes(payload: dict) -> None:  # type: ignore[type-arg]
        return None

    ids = await app.submit_many([TaskRequest(type="takes.dict", payload={"x": [1]})] * 3)
    assert [(await app.get(i)).payload for i in ids] == [{"x": [1]}] * 3
    for bad in ([1], "x", None):
        with pytest.raises(InvalidPayload):
            await app.submit_many(
                [TaskRequest(type="takes.dict", payload={})] * 2
                + [TaskRequest(type="takes.dict", payload=bad)]
            )
    assert sum(row.count for row in await app.broker.counts()) == 3


async def test_a_types_default_no_task_may_have_is_refused_alone_and_in_a_batch() -> None:
    app = App(settings=Settings(broker_url="memory://"))

    @app.task("too.long", timeout=8 * 24 * 3600.0)
    async def long(payload: object) -> None:
        return None

    with pytest.raises(ValidationError, match="timeout"):
        await app.submit("too.long")
    with pytest.raises(ValidationError, match="timeout"):
        await app.submit_many([TaskRequest(type="too.long")] * 3)
    assert await app.broker.counts() == []


async def test_submit_takes_the_types_defaults_and_the_callers_options() -> None:
    app = build_app(max_attempts=7)
    default = await app.get(await app.submit("quick", 1))
    assert default.max_attempts == 7
    assert default.priority is Priority.NORMAL
    custom = await app.get(
        await app.submit("quick", 1, priority="high", max_attempts=2, timeout=5, queue="q2")
    )
    assert (custom.priority, custom.max_attempts, custom.timeout, custom.queue) == (
        Priority.HIGH,
        2,
        5.0,
        "q2",
    )


async def test_an_idempotency_key_returns_the_first_task() -> None:
    app = build_app()
    first = await app.submit("quick", 1, idempotency_key="k1")
    again = await app.submit("quick", 1, idempotency_key="k1")
    assert again == first
    await drain(app, timeout=5)
    assert (await app.result(first, timeout=1)).data == 1


async def test_a_repeated_key_with_another_request_is_a_conflict() -> None:
    app = build_app()
    first = await app.submit("quick", [1], idempotency_key="k1")
    for payload in ([2], [1.0], [True]):  # canonical JSON, not Python's ==
        with pytest.raises(IdempotencyConflict) as info:
            await app.submit("quick", payload, idempotency_key="k1")
        assert info.value.code == "idempotency_conflict"
        assert (info.value.key, info.value.existing_id) == ("k1", first)
        assert "was already used for another task" in str(info.value)
    for options in ({"priority": "HIGH"}, {"queue": "other"}):
        with pytest.raises(IdempotencyConflict):
            await app.submit("quick", [1], idempotency_key="k1", **options)
    assert await app.submit("quick", [1], idempotency_key="k1") == first


async def test_a_batch_item_whose_key_names_another_request_is_a_conflict() -> None:
    app = build_app()
    first = await app.submit("quick", {"n": 1}, idempotency_key="k1")
    batch = [
        TaskRequest(type="quick", payload={"n": 0}),
        TaskRequest(type="quick", payload={"n": 1.0}, idempotency_key="k1"),
    ]
    with pytest.raises(IdempotencyConflict, match=r"^tasks\[1\]: .*already used") as info:
        await app.submit_many(batch)
    assert info.value.existing_id == first
    same = [TaskRequest(type="quick", payload={"n": 1}, idempotency_key="k1")]
    assert await app.submit_many(same) == [first]


async def test_one_key_twice_in_a_batch_must_name_one_request() -> None:
    app = build_app()
    clash = [
        TaskRequest(type="quick", payload=[1], idempotency_key="k2"),
        TaskRequest(type="quick", payload=[1.0], idempotency_key="k2"),
    ]
    with pytest.raises(IdempotencyConflict, match=r"tasks\[1\].*tasks\[0\]"):
        await app.submit_many(clash)
    assert await app.broker.counts() == []  # refused before anything was stored
    twice = [clash[0], clash[0]]
    ids = await app.submit_many(twice)
    assert ids[0] == ids[1]


async def test_get_of_an_unknown_task_raises() -> None:
    app = build_app()
    with pytest.raises(TaskNotFound):
        await app.get("01HF7YAT00XXXXXXXXXXXXXXXX")


async def test_result_times_out_while_the_task_is_not_finished() -> None:
    app = build_app()
    task_id = await app.submit("quick", 1)
    with pytest.raises(TimeoutError):
        await app.result(task_id, timeout=0.05)


async def test_a_dead_task_replayed_runs_again_with_a_fresh_attempt_count() -> None:
    app = build_app()
    task_id = await app.submit("fail.until", {"succeed_on": 2}, max_attempts=1)
    async with running_worker(app):
        [record] = await finished(app, [task_id])
        assert (record.state, record.attempt) == (TaskState.DEAD, 1)
        assert await app.retry(task_id) is ReplayResult.REPLAYED
        [record] = await finished(app, [task_id])
    # Attempt numbers restart, so the handler sees attempt 1 again and fails again.
    assert (record.state, record.attempt) == (TaskState.DEAD, 1)
    assert [h.status for h in record.history] == [ResultStatus.FAILURE, ResultStatus.FAILURE]
    assert await app.retry("01HF7YAT00XXXXXXXXXXXXXXXX") is ReplayResult.NOT_FOUND


def test_submit_sync_stores_the_task_from_synchronous_code(tmp_path: Path) -> None:
    app = App(settings=Settings(broker_url=f"sqlite:///{tmp_path}/s.db"), builtins=False)
    app.task("quick")(_quick)
    task_id = app.submit_sync("quick", 5)

    async def read() -> TaskState:
        async with app:
            return (await app.get(task_id)).state

    assert asyncio.run(read()) is TaskState.QUEUED


async def _quick(payload: int) -> int:
    return payload
