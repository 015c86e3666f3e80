"""model.deps: where a task with parents starts, and what a parent's end does to it."""

from __future__ import annotations

import pytest

from taskengine.errors import ValidationError
from taskengine.model import TaskState, new_task
from taskengine.model.deps import gate, parent_failed_error, releases

S = TaskState
NOW = 1_700_000_000.0


def test_the_gate_follows_the_parents_states() -> None:
    assert gate([], [], "cancel").state is S.QUEUED
    assert gate(["a", "b"], [S.SUCCEEDED, None], "cancel").state is S.QUEUED  # None: purged
    blocked = gate(["a", "b", "c"], [S.SUCCEEDED, S.RUNNING, S.BLOCKED], "cancel")
    assert (blocked.state, blocked.waiting) == (S.BLOCKED, ("b", "c"))
    failed = gate(["a", "b"], [S.QUEUED, S.DEAD], "cancel")
    assert (failed.state, failed.failed) == (S.CANCELLED, ("b", S.DEAD))
    anyway = gate(["a", "b"], [S.QUEUED, S.DEAD], "run")
    assert (anyway.state, anyway.waiting) == (S.BLOCKED, ("a",))


def test_a_parents_end_releases_or_cancels() -> None:
    assert releases(S.SUCCEEDED, "cancel")
    assert not releases(S.DEAD, "cancel")
    assert not releases(S.CANCELLED, "cancel")
    assert releases(S.DEAD, "run")
    assert parent_failed_error("P", S.DEAD) == "a parent ended dead: P"


def test_depends_on_is_checked_at_submit() -> None:
    parent = new_task("t", now=NOW)
    assert new_task("t", now=NOW, depends_on=[parent.id]).depends_on == (parent.id,)
    for bad, message in (
        (["not-an-id"], "not a task id"),
        ([parent.id, parent.id], "twice"),
        (parent.id, "not one string"),
    ):
        with pytest.raises(ValidationError, match=message):
            new_task("t", now=NOW, depends_on=bad)
    with pytest.raises(ValidationError, match="itself"):
        new_task("t", now=NOW, task_id=parent.id, depends_on=[parent.id])
    with pytest.raises(ValidationError, match="on_parent_failure"):
        new_task("t", now=NOW, depends_on=[parent.id], on_parent_failure="ignore")
