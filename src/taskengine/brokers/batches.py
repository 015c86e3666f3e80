"""Pure helpers that shape a batch before it goes to SQL and align the answers after.

One SQL statement updates a row at most once, so repeats inside a batch are taken out here and
answered as the reference broker answers them (the first one acts, the later ones see it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from taskengine.brokers.base import EnqueueResult
from taskengine.errors import UnknownParent
from taskengine.model import Task
from taskengine.model.unique import UniqueLock

Pair = tuple[str, str]  # (task id, lease token)


def split_new(
    tasks: Sequence[Task], known_ids: set[str], known_keys: Mapping[str, str]
) -> tuple[list[EnqueueResult], list[Task]]:
    """Aligned results and the tasks to store: a task whose id or idempotency key is stored,
    or earlier in the batch, is a duplicate answered with the first task's id."""
    ids = set(known_ids)
    keys = dict(known_keys)
    results: list[EnqueueResult] = []
    fresh: list[Task] = []
    for task in tasks:
        if task.id in ids:
            results.append(EnqueueResult(task.id, False))
            continue
        key = task.idempotency_key
        if key is not None and key in keys:
            results.append(EnqueueResult(keys[key], False))
            continue
        ids.add(task.id)
        if key is not None:
            keys[key] = task.id
        fresh.append(task)
        results.append(EnqueueResult(task.id, True))
    return results, fresh


def parents_to_find(fresh: Sequence[Task]) -> list[str]:
    """The distinct parents of the new tasks that are not themselves new in the batch: the
    ids a broker must find stored (sorted: a stable lock order)."""
    new_ids = {task.id for task in fresh}
    return sorted({p for task in fresh for p in task.depends_on if p not in new_ids})


def check_parents_known(fresh: Sequence[Task], stored: Iterable[str]) -> None:
    """Raise UnknownParent unless every new task's parents are stored or earlier in the
    batch (a parent later in the batch is unknown when its child is gated)."""
    seen = set(stored)
    for task in fresh:
        missing = [p for p in task.depends_on if p not in seen]
        if missing:
            raise UnknownParent(task.id, missing)
        seen.add(task.id)


def lock_keys(unique: Sequence[UniqueLock | None] | None) -> list[str]:
    """The distinct unique lock keys a batch asks for, sorted."""
    return sorted({lock.key for lock in unique or () if lock is not None})


def split_unique(
    results: list[EnqueueResult],
    fresh: list[Task],
    unique: Sequence[UniqueLock | None] | None,
    tasks: Sequence[Task],
    held: Mapping[str, str],
) -> tuple[list[EnqueueResult], list[Task], list[tuple[Task, UniqueLock]]]:
    """After `split_new`: a fresh task whose unique lock is held (`held`: key -> holder id of
    the stored locks that still hold), or taken earlier in the batch, is a duplicate answered
    with the holder's id. Returns the results, the tasks to store and the locks they take."""
    if not unique:
        return results, fresh, []
    locks = {task.id: lock for task, lock in zip(tasks, unique, strict=True) if lock is not None}
    holders = dict(held)
    dropped: set[str] = set()
    taken: list[tuple[Task, UniqueLock]] = []
    for task in fresh:
        lock = locks.get(task.id)
        if lock is None:
            continue
        if lock.key in holders:
            dropped.add(task.id)
            continue
        holders[lock.key] = task.id
        taken.append((task, lock))
    if not dropped:
        return results, fresh, taken
    answer = {tid: holders[locks[tid].key] for tid in dropped}
    results = [
        EnqueueResult(answer[r.id], False) if r.created and r.id in answer else r for r in results
    ]
    return results, [t for t in fresh if t.id not in dropped], taken


def first_of_each(pairs: Iterable[Pair]) -> tuple[list[int], list[bool]]:
    """Indexes of the first occurrence of each pair, sorted by pair (a stable lock order
    across callers), and per input whether it is such a first occurrence."""
    first: dict[Pair, int] = {}
    is_first: list[bool] = []
    for index, pair in enumerate(pairs):
        is_first.append(pair not in first)
        first.setdefault(pair, index)
    return [first[pair] for pair in sorted(first)], is_first


def unique_sorted(ids: Iterable[str]) -> list[str]:
    """The distinct ids in sorted order (a stable lock order across callers)."""
    return sorted(set(ids))
