"""Dependencies in the SQLite store (model.deps): gating new and replayed tasks on their
parents, and releasing or cancelling dependents when a parent ends. Functions of the write
connection, run by the writer thread inside the caller's transaction, so a parent's settle and
its dependents' release commit together."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from taskengine.brokers.batches import check_parents_known, parents_to_find
from taskengine.brokers.sqlite import queries as q
from taskengine.brokers.sqlite.codec import json_list, task_params
from taskengine.model import Task, TaskState
from taskengine.model.deps import blame, gate, parent_failed_result, releases
from taskengine.model.records import as_received
from taskengine.model.serializer import from_json, pack


def insert(conn: sqlite3.Connection, fresh: Sequence[Task], now: float) -> None:
    """Insert new tasks, each queued, blocked or cancelled as its parents say; a parent must
    be stored or earlier in the batch (UnknownParent, nothing stored, otherwise)."""
    if not any(task.depends_on for task in fresh):
        conn.executemany(q.INSERT_TASK, [task_params(as_received(t, now), now) for t in fresh])
        conn.execute(q.ADD_DEPTH, (len(fresh),))
        return
    wanted = parents_to_find(fresh)
    states: dict[str, TaskState] = {
        row[0]: TaskState(row[1]) for row in conn.execute(q.SELECT_PARENTS, (json_list(wanted),))
    }
    check_parents_known(fresh, states)
    rows: list[tuple[Any, ...]] = []
    edges: list[tuple[str, str]] = []
    for task in fresh:
        task = as_received(task, now)
        if not task.depends_on:
            rows.append(task_params(task, now))
            states[task.id] = TaskState.QUEUED
            continue
        decided = gate(
            task.depends_on, [states.get(p) for p in task.depends_on], task.on_parent_failure
        )
        result = None
        if decided.failed is not None:
            result = parent_failed_result(task.id, *decided.failed, now)
        rows.append(task_params(task, now, decided.state, len(decided.waiting), result))
        edges.extend((parent, task.id) for parent in decided.waiting)
        states[task.id] = decided.state
    conn.executemany(q.INSERT_TASK, rows)
    conn.executemany(q.INSERT_WAIT, edges)
    queued = sum(1 for task in fresh if states[task.id] is TaskState.QUEUED)
    if queued:  # blocked and cancelled ones are not counted (schema: depth)
        conn.execute(q.ADD_DEPTH, (queued,))


def release(conn: sqlite3.Connection, ended: Sequence[tuple[str, TaskState]], now: float) -> bool:
    """Tasks ended in terminal states in one call: release their dependents (queued at zero
    waiting) or cancel them, naming the parent model.deps.blame picks, and theirs, a level of
    the graph per round. True if a task became queued."""
    if not ended:
        return False
    waited = {row[0] for row in conn.execute(q.SELECT_WAITED, (json_list(i for i, _ in ended),))}
    pending = [(task_id, state) for task_id, state in ended if task_id in waited]
    queued = 0
    while pending:
        children: dict[str, tuple[int, str | None, int]] = {}
        counts: dict[str, int] = {}
        failed: dict[str, list[tuple[str, TaskState]]] = {}
        for parent, parent_state in pending:
            rows = conn.execute(q.SELECT_WAITING, (parent,)).fetchall()
            conn.execute(q.DELETE_WAITS, (parent,))
            for child_id, state, waiting, on_parent_failure, attempt in rows:
                if state != TaskState.BLOCKED:
                    continue
                children[child_id] = (waiting, on_parent_failure, attempt)
                if releases(parent_state, on_parent_failure or "cancel"):
                    counts[child_id] = counts.get(child_id, 0) + 1
                else:
                    failed.setdefault(child_id, []).append((parent, parent_state))
        pending = []
        for child_id in sorted(failed):
            parent, parent_state = blame(failed[child_id])
            attempt = children[child_id][2]
            result = parent_failed_result(child_id, parent, parent_state, now, attempt)
            conn.execute(q.CANCEL_BLOCKED, (now, pack(result), child_id))
            pending.append((child_id, TaskState.CANCELLED))
        for child_id in sorted(counts.keys() - failed.keys()):
            count = counts[child_id]
            conn.execute(q.RELEASE, (now, child_id, count))
            queued += children[child_id][0] <= count
    if queued:
        conn.execute(q.ADD_DEPTH, (queued,))
    return queued > 0


class Parents:
    """The dependencies of tasks being replayed, and their parents' states as the batch goes."""

    def __init__(self, conn: sqlite3.Connection, ids: Sequence[str]) -> None:
        self._conn = conn
        self.deps: dict[str, tuple[tuple[str, ...], str]] = {}
        self.states: dict[str, TaskState] = {}
        for task_id, state, depends_on, opf in conn.execute(q.SELECT_PARENTS, (json_list(ids),)):
            self.states[task_id] = TaskState(state)
            if depends_on is not None:
                self.deps[task_id] = (tuple(from_json(depends_on)), opf or "cancel")
        parents = {p for deps, _ in self.deps.values() for p in deps} - set(self.states)
        for task_id, state, _, _ in conn.execute(q.SELECT_PARENTS, (json_list(parents),)):
            self.states[task_id] = TaskState(state)

    def replay(self, task_id: str, now: float, head: float) -> TaskState | None:
        """Gate a replayed task: None if a parent's failure would cancel it again; BLOCKED
        (its waits stored, its row updated here) or QUEUED (the caller queues it)."""
        found = self.deps.get(task_id)
        if found is None:
            self.states[task_id] = TaskState.QUEUED
            return TaskState.QUEUED
        depends_on, on_parent_failure = found
        decided = gate(depends_on, [self.states.get(p) for p in depends_on], on_parent_failure)
        if decided.failed is not None:
            return None
        if decided.state is TaskState.BLOCKED:
            self._conn.execute(q.REPLAY_BLOCKED, (now, len(decided.waiting), task_id, head))
            self._conn.executemany(q.INSERT_WAIT, [(p, task_id) for p in decided.waiting])
        self.states[task_id] = decided.state
        return decided.state
