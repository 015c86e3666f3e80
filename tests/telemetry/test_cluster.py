"""The workers of every instance: registry entries, with this process's own as they are now."""

from __future__ import annotations

from taskengine.model.worker import WorkerInfo
from taskengine.runtime.status import EngineStatus, WorkerStatus
from taskengine.telemetry.cluster import with_local

NOW = 1_700_000_000.0


def _info(worker_id: str, last_seen: float, state: str = "idle") -> WorkerInfo:
    instance = worker_id.split("/")[0]
    return WorkerInfo(
        id=worker_id,
        instance=instance,
        host="h",
        pid=1,
        state=state,
        started_at=NOW - 100,
        last_seen=last_seen,
    )


def _status(*workers: WorkerStatus) -> EngineStatus:
    return EngineStatus(
        instance="b", at=NOW, size=2, busy=1, buffered=0, overrunning_threads=0, workers=workers
    )


def test_this_process_workers_replace_their_registry_entries_and_join_the_list() -> None:
    registry = [_info("a/w1", NOW - 5), _info("b/w1", NOW - 5), _info("b/w3", NOW - 5)]
    local = _status(
        WorkerStatus(info=_info("b/w1", NOW, "busy"), active=True),
        WorkerStatus(info=_info("b/w2", NOW), active=True),  # started since the last heartbeat
        WorkerStatus(info=_info("b/w4", NOW), active=False),  # retired: left the registry
    )
    merged = with_local(registry, local)
    assert [(i.id, i.state, i.last_seen) for i in merged] == [
        ("a/w1", "idle", NOW - 5),
        ("b/w1", "busy", NOW),
        ("b/w2", "idle", NOW),
        ("b/w3", "idle", NOW - 5),  # not in this status: as the registry has it
    ]
