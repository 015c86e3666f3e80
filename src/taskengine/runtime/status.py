"""The engine's status: one snapshot of the pool, its workers, breakers and stuck threads.

The engine builds it (`Engine.status`) and everything that reports on the engine reads it: the
sampler, the JSON metrics, the live feed and Prometheus. None of them reaches into the pool,
the runner or the breakers, so telemetry depends on this shape only.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from taskengine.model.worker import WorkerInfo
from taskengine.policy.breaker import BreakerSnapshot
from taskengine.runtime.workers import Worker


class WorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One worker of this process's pool, as of the snapshot."""

    info: WorkerInfo  # as the worker registry would hold it now (without the task types)
    active: bool  # its coroutine runs; False once it retired (and left the registry)


class EngineStatus(msgspec.Struct, frozen=True, kw_only=True):
    """This process's engine at one instant."""

    instance: str
    at: float  # the `now` every figure below is taken at
    size: int  # workers not retiring
    busy: int  # workers running a task
    buffered: int  # leases reserved and waiting for a worker
    overrunning_threads: int  # thread runs stopped that still hold their thread
    workers: tuple[WorkerStatus, ...] = ()  # every worker of the pool, retired ones included
    breakers: dict[str, BreakerSnapshot] = msgspec.field(default_factory=dict)  # by name


def worker_statuses(
    workers: Iterable[Worker], instance: str, host: str, pid: int, now: float
) -> tuple[WorkerStatus, ...]:
    """The status of each of `workers` as of `now`, in their order."""
    return tuple(
        WorkerStatus(info=worker.info(instance, host, pid, now), active=worker.active)
        for worker in workers
    )
