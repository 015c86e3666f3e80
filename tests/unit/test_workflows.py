"""Workflows compile to DAGs: chain, group and chord shapes, and the checks on a DAG."""

from __future__ import annotations

import pytest

from taskengine.errors import InvalidWorkflow
from taskengine.model import TaskRecord, TaskState
from taskengine.request import TaskRequest
from taskengine.workflows import (
    Node,
    chain,
    chord,
    group,
    nodes_of,
    records_in_order,
    signature,
    topological,
    workflow_state,
)


def _shape(nodes: list[Node]) -> list[tuple[str, str, list[str]]]:
    return [(n.name, n.task.type, n.after) for n in nodes]


def test_a_chain_runs_each_step_after_the_previous() -> None:
    flow = chain(signature("a"), signature("b"), signature("c"))
    assert _shape(nodes_of(flow)) == [("0", "a", []), ("1", "b", ["0"]), ("2", "c", ["1"])]


def test_a_chord_callback_runs_after_every_member_in_order() -> None:
    flow = chord([signature("m", {"i": i}) for i in range(3)], signature("cb"))
    assert _shape(nodes_of(flow)) == [
        ("0", "m", []),
        ("1", "m", []),
        ("2", "m", []),
        ("3", "cb", ["0", "1", "2"]),
    ]


def test_a_chain_of_groups_joins_each_group_before_the_next() -> None:
    flow = chain(group([signature("a"), signature("b")]), group([signature("c"), signature("d")]))
    assert _shape(nodes_of(flow)) == [
        ("0", "a", []),
        ("1", "b", []),
        ("2", "c", ["0", "1"]),
        ("3", "d", ["0", "1"]),
    ]


def test_a_dag_is_ordered_parents_first_and_checked() -> None:
    nodes = [
        Node(name="report", task=signature("r"), after=["left", "right"]),
        Node(name="left", task=signature("l"), after=["fetch"]),
        Node(name="fetch", task=signature("f")),
        Node(name="right", task=signature("r"), after=["fetch"]),
    ]
    assert [n.name for n in topological(nodes)] == ["fetch", "left", "right", "report"]
    with pytest.raises(InvalidWorkflow, match="cycle among: a, b"):
        topological(
            [
                Node(name="a", task=signature("x"), after=["b"]),
                Node(name="b", task=signature("x"), after=["a"]),
                Node(name="c", task=signature("x")),
            ]
        )
    with pytest.raises(InvalidWorkflow, match="named twice"):
        topological([Node(name="a", task=signature("x"))] * 2)
    with pytest.raises(InvalidWorkflow, match="unknown"):
        topological([Node(name="a", task=signature("x"), after=["zz"])])
    with pytest.raises(InvalidWorkflow):
        chain()
    with pytest.raises(InvalidWorkflow):
        group([])


def test_a_long_chain_is_ordered_in_linear_time() -> None:
    flow = chain(*(signature("s") for _ in range(10_000)))
    ordered = topological(nodes_of(flow))
    assert [n.name for n in ordered[:3]] == ["0", "1", "2"]
    assert ordered[-1].after == ["9998"]


def test_a_workflow_with_too_many_dependencies_is_refused() -> None:
    wide = group([signature("s") for _ in range(400)])
    with pytest.raises(InvalidWorkflow, match="at most 100000 dependencies, this one 160000"):
        topological(nodes_of(chain(wide, wide)))
    joined = chain(wide, signature("join"), wide)  # 800 edges through one step
    assert len(topological(nodes_of(joined))) == 801


def _record(task_id: str, state: TaskState, *parents: str) -> TaskRecord:
    return TaskRecord(
        id=task_id, type="t", created_at=0.0, run_at=0.0, state=state, depends_on=parents
    )


def test_records_are_ordered_parents_first_and_summed_up_in_one_word() -> None:
    records = [
        _record("3", TaskState.BLOCKED, "1", "2"),
        _record("2", TaskState.SUCCEEDED, "1"),
        _record("1", TaskState.SUCCEEDED),
    ]
    assert [r.id for r in records_in_order(records)] == ["1", "2", "3"]
    assert workflow_state(records) == "running"
    assert workflow_state([_record("1", TaskState.DEAD), _record("2", TaskState.CANCELLED)]) == (
        "failed"
    )
    assert workflow_state([_record("1", TaskState.CANCELLED)]) == "cancelled"
    assert workflow_state([_record("1", TaskState.SUCCEEDED)]) == "succeeded"


def test_a_typed_handles_signature_is_a_workflow_step() -> None:
    from taskengine.handles import Signature

    typed = Signature(type="b", payload={"n": 1}, options={"priority": "high"})
    flow = chord([signature("a"), typed], Signature(type="cb", payload=None))
    nodes = nodes_of(flow)
    assert _shape(nodes) == [("0", "a", []), ("1", "b", []), ("2", "cb", ["0", "1"])]
    request = nodes[1].task
    assert isinstance(request, TaskRequest)
    assert request.priority == "high"
