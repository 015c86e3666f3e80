"""Dependencies in the PostgreSQL store (model.deps): gating new and replayed tasks on their
parents, releasing or cancelling dependents when a parent ends. Each function runs inside the
caller's transaction, so a parent's end and its dependents' release commit together.

Fencing against a parent settled at the same moment: the enqueue (or replay) that stores an
edge first takes the parent's row lock and marks it `waited` (MARK_PARENTS); a settle skips a
`waited` task on its fast path and settles it in a transaction whose later statements (new
snapshots, READ COMMITTED) see every edge committed before its row lock was granted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from taskengine.brokers.batches import check_parents_known, parents_to_find
from taskengine.brokers.postgres import queries as q
from taskengine.brokers.postgres.codec import Gated
from taskengine.model import Task, TaskState
from taskengine.model.deps import blame, gate, parent_failed_result, releases
from taskengine.model.serializer import pack

Sql = Callable[[str], str]


async def gate_new(
    conn: Any, sql: Sql, fresh: Sequence[Task], now: float
) -> tuple[list[Gated], list[tuple[str, str]]]:
    """Where each new task starts and the edges to store; UnknownParent if a parent is
    neither stored nor earlier in the batch. Locks the stored parents (MARK_PARENTS)."""
    if not any(task.depends_on for task in fresh):
        return [Gated(TaskState.QUEUED)] * len(fresh), []
    rows = await conn.fetch(sql(q.MARK_PARENTS), parents_to_find(fresh))
    states: dict[str, TaskState] = {row["id"]: TaskState(row["state"]) for row in rows}
    check_parents_known(fresh, states)
    gates: list[Gated] = []
    edges: list[tuple[str, str]] = []
    for task in fresh:
        if not task.depends_on:
            gates.append(Gated(TaskState.QUEUED))
            states[task.id] = TaskState.QUEUED
            continue
        decided = gate(
            task.depends_on, [states.get(p) for p in task.depends_on], task.on_parent_failure
        )
        result = None
        if decided.failed is not None:
            result = parent_failed_result(task.id, *decided.failed, now)
        gates.append(Gated(decided.state, len(decided.waiting), result))
        edges.extend((parent, task.id) for parent in decided.waiting)
        states[task.id] = decided.state
    return gates, edges


async def store_edges(conn: Any, sql: Sql, edges: Sequence[tuple[str, str]]) -> None:
    """Insert pending edges (parent -> child) and mark their parents `waited` (those new in
    the batch too); nothing when there are none."""
    if edges:
        await conn.fetch(sql(q.MARK_PARENTS), sorted({p for p, _ in edges}))
        await conn.execute(sql(q.INSERT_WAITS), [p for p, _ in edges], [c for _, c in edges])


async def release(conn: Any, sql: Sql, ended: Sequence[tuple[str, TaskState]], now: float) -> bool:
    """Tasks ended in terminal states in one call: release their dependents (queued at zero
    waiting) or cancel them, naming the parent model.deps.blame picks, and theirs, a level of
    the graph per round. True if a task became queued."""
    queued = False
    pending = dict(ended)
    while pending:
        rows = await conn.fetch(sql(q.TAKE_WAITS), list(pending))
        await conn.execute(sql(q.UNMARK), list(pending))
        counts: dict[str, int] = {}
        failed: dict[str, list[tuple[str, TaskState]]] = {}
        for row in rows:
            parent, child = row["parent"], row["child"]
            parent_state = pending[parent]
            if releases(parent_state, row["on_parent_failure"] or "cancel"):
                counts[child] = counts.get(child, 0) + 1
            else:
                failed.setdefault(child, []).append((parent, parent_state))
        pending = {}
        if failed:
            ids = sorted(failed)
            blobs = [pack(parent_failed_result(c, *blame(failed[c]), now)) for c in ids]
            for row in await conn.fetch(sql(q.CANCEL_BLOCKED), ids, blobs, now):
                pending[row["id"]] = TaskState.CANCELLED
        released = sorted(c for c in counts if c not in failed)
        if released:
            rows = await conn.fetch(sql(q.RELEASE), released, [counts[c] for c in released], now)
            queued = queued or any(row["state"] == TaskState.QUEUED for row in rows)
    return queued


async def replay(
    conn: Any, sql: Sql, ids: Sequence[str], now: float, heads: list[float]
) -> dict[str, bool]:
    """Replay dead or cancelled tasks in input order, each gated on its parents as the batch
    leaves them (model.deps); whether each known id was replayed (a repeat: False)."""
    rows = await conn.fetch(sql(q.REPLAY_LOOKUP), sorted(set(ids)))
    found = {row["id"]: row for row in rows}
    parents = sorted({p for row in rows for p in (row["depends_on"] or ())} - set(found))
    states: dict[str, TaskState] = {i: TaskState(row["state"]) for i, row in found.items()}
    if parents:
        for row in await conn.fetch(sql(q.MARK_PARENTS), parents):
            states[row["id"]] = TaskState(row["state"])
    answers: dict[str, bool] = {}
    chosen: list[tuple[str, TaskState, int]] = []
    edges: list[tuple[str, str]] = []
    for task_id in ids:
        row = found.get(task_id)
        if row is None or task_id in answers:
            continue
        replayable = states[task_id] in (TaskState.DEAD, TaskState.CANCELLED)
        decided_state: TaskState = TaskState.QUEUED
        waiting: tuple[str, ...] = ()
        if replayable and row["depends_on"]:
            depends_on = tuple(row["depends_on"])
            decided = gate(
                depends_on,
                [states.get(p) for p in depends_on],
                row["on_parent_failure"] or "cancel",
            )
            replayable = decided.failed is None
            decided_state, waiting = decided.state, decided.waiting
        answers[task_id] = replayable
        if replayable:
            chosen.append((task_id, decided_state, len(waiting)))
            edges.extend((p, task_id) for p in waiting)
            states[task_id] = decided_state
    await store_edges(conn, sql, edges)
    if chosen:
        await conn.execute(
            sql(q.REPLAY_GATED),
            [c[0] for c in chosen],
            now,
            heads,
            [c[1].value for c in chosen],
            [c[2] for c in chosen],
        )
    return answers
