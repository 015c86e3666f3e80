"""Workflows: chains, groups, chords and any DAG of tasks, built on dependencies (ADR 0037).

A workflow is a list of nodes, each a task request with the names of the nodes it runs
after. `chain`, `group` and `chord` compile to such a list; `App.submit_workflow` gives every
node a task id, turns `after` into `depends_on`, tags every task with one workflow id and
enqueues them all in one batch. A step receives its parents' results through its context
(`ctx.parent_results`, in `depends_on` order): a chain step gets the previous step's, a chord
callback every member's, in the group's order.

A one-task step is a `TaskRequest` or a `Signature` (taskengine.handles): what
`signature(type, payload, **options)` and a typed handle's `handle.signature(...)` build; a
signature becomes its request when the workflow compiles.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from taskengine.errors import InvalidWorkflow
from taskengine.handles import Signature
from taskengine.model import TaskRecord, TaskState
from taskengine.model.deps import MAX_PARENTS
from taskengine.request import TaskRequest

MAX_NODES = 20_000  # nodes of one workflow: one enqueue batch
# Dependencies of one workflow: every edge is stored, and released one by one. A chain of two
# groups of m and n tasks has m * n; measured: a chain of 100 groups of 100 (990,000 edges)
# took 16 s to submit on SQLite and one Redis script past its 5 s deadline.
MAX_EDGES = 100_000


def signature(type: str, payload: Any = None, **options: Any) -> Signature[Any]:
    """One step of a workflow: a task of `type` with `payload` and submit options."""
    sig: Signature[Any] = Signature(type=type, payload=payload, options=options)
    sig.request()  # an unknown option fails here, where the step is written
    return sig


def request_of(step: TaskRequest | Signature[Any]) -> TaskRequest:
    """The request a one-task step stands for."""
    return step if isinstance(step, TaskRequest) else step.request()


class Node(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a DAG: a unique name, the request, and the names of the nodes it runs
    after (their results arrive in its context in this order)."""

    name: str
    task: TaskRequest | Signature[Any]
    after: list[str] = msgspec.field(default_factory=list)
    on_parent_failure: str = "cancel"


class Canvas(msgspec.Struct, frozen=True):
    """Steps run one after another (chain) or side by side (group)."""

    kind: Literal["chain", "group"]
    steps: tuple[Step, ...]


Step = TaskRequest | Signature[Any] | Canvas


def chain(*steps: Step) -> Canvas:
    """Run `steps` one after another; each receives the previous one's results."""
    if not steps:
        raise InvalidWorkflow("a chain needs at least one step")
    return Canvas("chain", tuple(steps))


def group(steps: Iterable[Step]) -> Canvas:
    """Run `steps` side by side; the group as a whole is the workflow's id."""
    members = tuple(steps)
    if not members:
        raise InvalidWorkflow("a group needs at least one step")
    return Canvas("group", members)


def chord(header: Canvas | Iterable[Step], callback: Step) -> Canvas:
    """Run `header` (a group) and then `callback`, which receives every result in order."""
    members = header if isinstance(header, Canvas) else group(header)
    return chain(members, callback)


def nodes_of(flow: Step | Sequence[Node]) -> list[Node]:
    """The DAG a canvas (or a one-task step) compiles to, or a list of nodes as given."""
    if isinstance(flow, TaskRequest | Signature | Canvas):
        nodes: list[Node] = []
        _walk(flow, [], nodes)
        return nodes
    return [
        node
        if isinstance(node.task, TaskRequest)
        else msgspec.structs.replace(node, task=node.task.request())
        for node in flow
    ]


def _walk(step: Step, after: list[str], nodes: list[Node]) -> list[str]:
    """Append the nodes of `step` (each after `after`); return the names it ends with."""
    if isinstance(step, TaskRequest | Signature):
        name = str(len(nodes))
        nodes.append(Node(name=name, task=request_of(step), after=after))
        return [name]
    if step.kind == "chain":
        ends = after
        for inner in step.steps:
            ends = _walk(inner, ends, nodes)
        return ends
    ends = []
    for inner in step.steps:
        ends += _walk(inner, after, nodes)
    return ends


def topological(nodes: Sequence[Node]) -> list[Node]:
    """The nodes parents first (stable: input order among ready ones); InvalidWorkflow on an
    unknown name, a repeated name, a cycle, or past the limits."""
    if not nodes:
        raise InvalidWorkflow("a workflow needs at least one task")
    if len(nodes) > MAX_NODES:
        raise InvalidWorkflow(f"a workflow has at most {MAX_NODES} tasks, got {len(nodes)}")
    by_name: dict[str, Node] = {}
    for node in nodes:
        if node.name in by_name:
            raise InvalidWorkflow(f"workflow node {node.name!r} is named twice")
        by_name[node.name] = node
    for node in nodes:
        missing = [a for a in node.after if a not in by_name]
        if missing:
            raise InvalidWorkflow(f"workflow node {node.name!r} runs after unknown {missing}")
        if len(set(node.after)) != len(node.after) or len(node.after) > MAX_PARENTS:
            raise InvalidWorkflow(f"workflow node {node.name!r}: `after` repeats or is too long")
    edges = sum(len(node.after) for node in nodes)
    if edges > MAX_EDGES:
        raise InvalidWorkflow(
            f"a workflow has at most {MAX_EDGES} dependencies, this one {edges}: a group "
            "after a group depends on each of its tasks; put one step between large groups"
        )
    order = kahn([n.name for n in nodes], {n.name: n.after for n in nodes})
    if len(order) < len(nodes):
        names = ", ".join(sorted(set(by_name) - set(order)))
        raise InvalidWorkflow(f"workflow has a cycle among: {names}")
    return [by_name[name] for name in order]


def kahn(names: Sequence[str], parents: dict[str, Sequence[str]]) -> list[str]:
    """`names` parents first (Kahn's algorithm, input order among ready ones); parents not
    among `names` count as done; those on a cycle are left out."""
    known = set(names)
    waiting = {n: sum(1 for p in parents.get(n, ()) if p in known) for n in names}
    children: dict[str, list[str]] = {}
    for name in names:
        for parent in parents.get(name, ()):
            if parent in known:
                children.setdefault(parent, []).append(name)
    ready = deque(n for n in names if waiting[n] == 0)
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for child in children.get(name, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return order


class Workflow(msgspec.Struct, frozen=True):
    """A submitted workflow: its id and each node's task id by name."""

    id: str
    tasks: dict[str, str]


def records_in_order(records: Sequence[TaskRecord]) -> list[TaskRecord]:
    """A workflow's records parents first (a parent not among them counts as placed)."""
    by_id = {r.id: r for r in sorted(records, key=lambda r: r.id)}
    order = kahn(list(by_id), {r.id: r.depends_on for r in records})
    placed = set(order)
    rest = [r for i, r in by_id.items() if i not in placed]  # none in a stored workflow
    return [by_id[i] for i in order] + rest


def workflow_state(records: Sequence[TaskRecord]) -> str:
    """One word for the whole: running while any task is unfinished, else failed if any
    ended dead, cancelled if any was cancelled, else succeeded."""
    states = {r.state for r in records}
    if states & {TaskState.BLOCKED, TaskState.QUEUED, TaskState.RUNNING}:
        return "running"
    if TaskState.DEAD in states:
        return "failed"
    if TaskState.CANCELLED in states:
        return "cancelled"
    return "succeeded"


__all__ = [
    "Canvas",
    "Node",
    "Signature",
    "Workflow",
    "chain",
    "chord",
    "group",
    "nodes_of",
    "records_in_order",
    "signature",
    "topological",
    "workflow_state",
]
