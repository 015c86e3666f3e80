"""Workflows end to end on every broker: a chain passes results along, a chord's callback gets
every member's result in order, a failure cancels what depends on it, and cancel and replay
act on the whole workflow (taskengine.workflows, ADR 0037)."""

from __future__ import annotations

from typing import Any

import pytest

from taskengine.app import App, TaskRequest
from taskengine.brokers import CancelResult, ReplayResult
from taskengine.errors import UnknownParent, ValidationError, WorkflowNotFound
from taskengine.model import ResultStatus, TaskState, new_id
from taskengine.model.deps import PARENT_FAILED
from taskengine.registry import TaskContext
from taskengine.testing import running_worker
from taskengine.workflows import Node, chain, chord, group, signature
from tests.runtime.conftest import MakeApp

TIMEOUT = 60.0  # generous: two cores shared by many test runs


def _register(app: App) -> App:
    @app.task("wf.add", max_attempts=1)
    async def add(payload: dict[str, int], ctx: TaskContext) -> int:
        """Add `n` to the previous step's result (0 for the first step)."""
        previous = sum(r for r in ctx.parent_results if isinstance(r, int))
        return previous + payload["n"]

    @app.task("wf.total", max_attempts=1)
    async def total(payload: Any, ctx: TaskContext) -> list[Any]:
        """A chord callback: every member's result, in the group's order."""
        return list(ctx.parent_results)

    @app.task("wf.fail", max_attempts=1)
    async def fail(payload: Any) -> None:
        raise RuntimeError("this step fails")

    @app.task("wf.flaky", max_attempts=1)
    async def flaky(payload: dict[str, str], ctx: TaskContext) -> str:
        """Fails while the marker task says so: succeeds after a replay."""
        if FLAKY["fail"]:
            raise RuntimeError("not yet")
        return "ok"

    return app


FLAKY = {"fail": True}


async def _settled(app: App, workflow_id: str) -> list[Any]:
    """Wait until every task of the workflow has finished; its records, parents first."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        records = await app.workflow(workflow_id)
        if all(
            r.state in (TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED) for r in records
        ):
            return records
        assert loop.time() < deadline, [(r.type, r.state) for r in records]
        await asyncio.sleep(0.02)


async def test_a_chain_passes_each_result_to_the_next_step(app_on: MakeApp) -> None:
    app = _register(await app_on())
    flow = chain(*(signature("wf.add", {"n": n}) for n in (1, 2, 3, 4)))

    async with running_worker(app):
        submitted = await app.submit_workflow(flow)
        records = await _settled(app, submitted.id)

    assert [r.result.data for r in records if r.result] == [1, 3, 6, 10]
    assert [r.id for r in records] == [submitted.tasks[str(i)] for i in range(4)]
    assert all(r.workflow == submitted.id for r in records)


async def test_a_chord_callback_gets_every_result_in_order(app_on: MakeApp) -> None:
    app = _register(await app_on())
    members = [signature("wf.add", {"n": n}) for n in range(20)]
    flow = chord(members, signature("wf.total"))

    async with running_worker(app, workers=4):
        submitted = await app.submit_workflow(flow)
        records = await _settled(app, submitted.id)

    callback = await app.get(submitted.tasks["20"])
    assert callback.result is not None
    assert callback.result.data == list(range(20))
    assert len(callback.depends_on) == 20
    assert len(records) == 21


async def test_a_failed_step_cancels_the_rest_of_the_chain(app_on: MakeApp) -> None:
    app = _register(await app_on())
    flow = chain(signature("wf.add", {"n": 1}), signature("wf.fail"), signature("wf.add", {"n": 2}))

    async with running_worker(app):
        submitted = await app.submit_workflow(flow)
        records = await _settled(app, submitted.id)

    assert [r.state for r in records] == [TaskState.SUCCEEDED, TaskState.DEAD, TaskState.CANCELLED]
    last = records[-1]
    assert last.result is not None and last.result.status is ResultStatus.CANCELLED
    assert last.result.error is not None and last.result.error.startswith(PARENT_FAILED)
    assert last.history == []  # it never ran


async def test_a_dag_with_run_anyway_runs_the_cleanup_after_a_failure(app_on: MakeApp) -> None:
    app = _register(await app_on())
    nodes = [
        Node(name="fetch", task=signature("wf.add", {"n": 5})),
        Node(name="broken", task=signature("wf.fail"), after=["fetch"]),
        Node(name="report", task=signature("wf.add", {"n": 1}), after=["broken"]),
        Node(
            name="cleanup",
            task=signature("wf.add", {"n": 100}),
            after=["fetch", "broken"],
            on_parent_failure="run",
        ),
    ]

    async with running_worker(app):
        submitted = await app.submit_workflow(nodes)
        await _settled(app, submitted.id)

    states = {name: (await app.get(task_id)).state for name, task_id in submitted.tasks.items()}
    assert states == {
        "fetch": TaskState.SUCCEEDED,
        "broken": TaskState.DEAD,
        "report": TaskState.CANCELLED,
        "cleanup": TaskState.SUCCEEDED,
    }
    cleanup = await app.get(submitted.tasks["cleanup"])
    assert cleanup.result is not None and cleanup.result.data == 105  # 5 + (None) + 100


async def test_replaying_a_workflow_reruns_the_failed_step_and_what_waited_on_it(
    app_on: MakeApp,
) -> None:
    app = _register(await app_on())
    FLAKY["fail"] = True
    flow = chain(
        signature("wf.add", {"n": 1}),
        signature("wf.flaky", {}),
        group([signature("wf.add", {"n": 2}), signature("wf.add", {"n": 3})]),
    )

    async with running_worker(app):
        submitted = await app.submit_workflow(flow)
        first = await _settled(app, submitted.id)
        assert [r.state for r in first] == [
            TaskState.SUCCEEDED,
            TaskState.DEAD,
            TaskState.CANCELLED,
            TaskState.CANCELLED,
        ]
        FLAKY["fail"] = False
        answers = await app.replay_workflow(submitted.id)
        assert sorted(answers.values()) == [ReplayResult.REPLAYED] * 3
        again = await _settled(app, submitted.id)

    assert [r.state for r in again] == [TaskState.SUCCEEDED] * 4


async def test_cancelling_a_workflow_cancels_every_unfinished_task(app_on: MakeApp) -> None:
    app = _register(await app_on())
    flow = chain(signature("wf.add", {"n": 1}, delay=3600.0), signature("wf.add", {"n": 2}))
    submitted = await app.submit_workflow(flow)

    answers = await app.cancel_workflow(submitted.id)

    assert list(answers.values()) == [CancelResult.CANCELLED, CancelResult.CANCELLED]
    records = await app.workflow(submitted.id)
    assert [r.state for r in records] == [TaskState.CANCELLED, TaskState.CANCELLED]


async def test_submit_refuses_unknown_parents_cycles_and_unknown_workflows() -> None:
    from tests.runtime.apps import build_app

    app = _register(build_app())
    with pytest.raises(UnknownParent):
        await app.submit("wf.add", {"n": 1}, depends_on=[new_id(1_700_000_000.0)])
    with pytest.raises(ValidationError, match="cycle"):
        await app.submit_workflow(
            [
                Node(name="a", task=signature("wf.add", {"n": 1}), after=["b"]),
                Node(name="b", task=signature("wf.add", {"n": 1}), after=["a"]),
            ]
        )
    with pytest.raises(ValidationError, match="unknown"):
        await app.submit_workflow([Node(name="a", task=signature("wf.add", {"n": 1}), after=["x"])])
    with pytest.raises(WorkflowNotFound):
        await app.workflow(new_id(1_700_000_000.0))
    assert await app.broker.counts() == []


async def test_a_submit_depending_on_a_task_waits_for_it() -> None:
    from tests.runtime.apps import build_app

    app = _register(build_app())
    first = await app.submit("wf.add", {"n": 2})
    second = await app.submit_many(
        [TaskRequest(type="wf.add", payload={"n": 3}, depends_on=[first])]
    )
    assert (await app.get(second[0])).state is TaskState.BLOCKED

    async with running_worker(app):
        result = await app.result(second[0], timeout=TIMEOUT)

    assert result.data == 5
