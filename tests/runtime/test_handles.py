"""Typed task handles: `@app.task` returns a handle that submits by handler, typed by payload."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from taskengine.app import App
from taskengine.handles import Signature, TaskHandle
from taskengine.model import Priority, ResultStatus, TaskState
from taskengine.registry import InvalidPayload, TaskContext
from taskengine.settings import Settings
from taskengine.testing import drain
from tests.runtime.handled import Email, app, attempt, count, log, send


@pytest.fixture(autouse=True)
async def _fresh() -> None:
    """The module's App is shared: give each test a broker of its own."""
    await app.close()
    app._broker = None


async def test_a_handle_submits_its_type_with_options_and_the_task_runs() -> None:
    assert isinstance(send, TaskHandle)
    task_id = await send.submit(Email(to="a@example.com"), priority="high", delay=0)
    record = await app.get(task_id)
    assert (record.type, record.priority) == ("email.send", Priority.HIGH)
    assert record.payload == {"to": "a@example.com", "subject": ""}  # stored as JSON
    await drain(app)
    result = await app.result(task_id, timeout=10)
    assert (result.status, result.data) == (ResultStatus.SUCCESS, "sent to a@example.com")


async def test_submit_many_is_one_batch_of_the_type() -> None:
    ids = await send.submit_many([Email(to=f"{n}@example.com") for n in range(3)], queue="mail")
    records = [await app.get(task_id) for task_id in ids]
    assert [r.payload["to"] for r in records] == ["0@example.com", "1@example.com", "2@example.com"]
    assert {r.queue for r in records} == {"mail"}


async def test_a_wrong_payload_is_refused_at_submit_as_by_name() -> None:
    for bad in ({"to": 1}, {"subject": "no recipient"}, {"to": "a", "cc": "b"}, "a@example.com"):
        with pytest.raises(InvalidPayload):
            await send.submit(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload):
        await send.submit_many([Email(to="ok"), {"to": 2}])  # type: ignore[list-item]
    assert await app.broker.counts() == []  # nothing stored, not even the good one


async def test_a_types_keep_result_applies_unless_the_submit_says_otherwise() -> None:
    gone = await log.submit(Email(to="h"))
    kept = await log.submit(Email(to="i"), keep_result=60)
    await drain(app)
    assert await app.broker.get([gone]) == [None]  # deleted as it succeeded
    record = await app.get(kept)
    assert (record.state, record.keep_result) == (TaskState.SUCCEEDED, 60.0)


async def test_submitting_by_name_still_works() -> None:
    task_id = await app.submit("email.send", {"to": "b@example.com"})
    assert (await app.get(task_id)).type == "email.send"


async def test_calling_a_handle_runs_the_handler() -> None:
    assert await send(Email(to="c@example.com")) == "sent to c@example.com"
    assert count(Email(to="abc")) == 3
    assert await attempt(Email(to="x"), TaskContext("id", 7, "w")) == 7
    assert send.__name__ == "send" and send.__doc__ == "Return who it was sent to."


async def test_a_signature_is_an_immutable_value_of_type_payload_and_options() -> None:
    sig = send.signature(Email(to="d@example.com"), priority="low", keep_result=0)
    assert isinstance(sig, Signature)
    assert (sig.type, sig.payload, sig.options) == (
        "email.send",
        Email(to="d@example.com"),
        {"priority": "low", "keep_result": 0},
    )
    with pytest.raises(AttributeError):
        sig.type = "other"  # type: ignore[misc]
    assert sig == send.signature(Email(to="d@example.com"), priority="low", keep_result=0)
    task_id = (await app.submit_many([sig.request()]))[0]
    record = await app.get(task_id)
    assert (record.priority, record.keep_result) == (Priority.LOW, 0)
    assert msgspec.json.decode(msgspec.json.encode(sig))["type"] == "email.send"


async def test_a_process_handler_is_found_by_its_handle_in_the_child() -> None:
    task_id = await count.submit(Email(to="abcd"))
    await drain(app)
    record = await app.get(task_id)
    assert record.state is TaskState.SUCCEEDED, record.history
    assert record.result is not None and record.result.data == 4


def test_the_sync_face_of_a_handle_submits_from_blocking_code(tmp_path: Path) -> None:
    local = App(settings=Settings(broker_url=f"sqlite:///{tmp_path}/sync.db", idle_wait=0.05))

    @local.task("email.sync")
    async def deliver(email: Email) -> str:
        return email.to

    try:
        one = deliver.sync.submit(Email(to="e@example.com"), priority="low")
        more = deliver.sync.submit_many([Email(to="f"), Email(to="g")], keep_result=60)
        with pytest.raises(InvalidPayload):
            deliver.sync.submit({"to": 3})  # type: ignore[arg-type]
        client = local.sync()
        assert client.get(one).priority is Priority.LOW
        assert [client.get(i).keep_result for i in more] == [60.0, 60.0]
        assert client.get(more[1]).payload == {"to": "g", "subject": ""}
    finally:
        local.sync().close()


async def test_a_handle_registered_with_another_app_runs_its_handler() -> None:
    """An app that registers another app's handle (a shared task module) runs the handler, as
    it would the function: an async handler is awaited, not called in a thread."""
    other = App("memory://", builtins=False)
    other.task("email.again")(send)
    other.task("email.count")(count)
    try:
        ids = [
            await other.submit("email.again", {"to": "d@example.com"}),
            await other.submit("email.count", {"to": "abcd"}),
        ]
        await drain(other)
        results = [await other.result(task_id, timeout=10) for task_id in ids]
        assert [(r.status, r.data) for r in results] == [
            (ResultStatus.SUCCESS, "sent to d@example.com"),
            (ResultStatus.SUCCESS, 4),
        ]
    finally:
        await other.close()
