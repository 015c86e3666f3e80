"""The heartbeat: keeps this instance's leases alive and its workers in the registry."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import msgspec

from taskengine.brokers.base import BrokerBackend
from taskengine.clock import Clock
from taskengine.model.worker import PeriodicInfo, TypeInfo
from taskengine.registry import Registry
from taskengine.runtime.known_types import KnownTypes
from taskengine.runtime.liveness import LIVE_HEARTBEATS, live_workers
from taskengine.runtime.pool import Pool
from taskengine.runtime.service import PeriodicService

log = logging.getLogger("taskengine.runtime")
HEARTBEAT = "heartbeat"
WARN_EVERY = 60  # failed publishes between two warnings (the first is always logged)
Report = Callable[[float], bytes]  # this process's telemetry report as of a time (ADR 0033)


class Heartbeat(PeriodicService):
    """Every `every` seconds: extend every held lease, act on lost and cancelled ones, and
    record the pool's workers (and forget the retired ones) in the worker registry."""

    def __init__(
        self,
        broker: BrokerBackend,
        clock: Clock,
        pool: Pool,
        registry: Registry,
        unknown_types: KnownTypes,
        *,
        instance: str,
        host: str,
        lease_for: float,
        every: float,
        periodic: Callable[[], tuple[PeriodicInfo, ...] | None] = lambda: None,
    ) -> None:
        # No backoff: a heartbeat late past the lease after a broker outage loses every run.
        # Bounded by its interval: a call stuck on a half-open connection must not stop the
        # heartbeats that keep every lease of this instance alive.
        super().__init__(HEARTBEAT, every, self.run_once, max_backoff=1, deadline=every)
        self.broker = broker
        self.clock = clock
        self.pool = pool
        self.registry = registry
        self.unknown_types = unknown_types
        self.instance = instance
        self.host = host
        self.lease_for = lease_for
        self._forgotten: set[str] = set()  # retired workers already taken out of the registry
        self.draining = False  # reported with each worker (remote control, ADR 0036)
        self.periodic = periodic  # the scheduler's entries while this instance leads it
        self.report: Report | None = None  # set: published with every heartbeat
        self.publish_failures = 0  # in a row

    async def publish(self, now: float) -> None:
        """Publish this process's telemetry report, kept for three heartbeats (one call).

        Best effort: a failure is logged and costs this report only, never the heartbeat that
        keeps the leases (a broker without the reports' table yet, say).
        """
        if self.report is None:
            return
        ttl = LIVE_HEARTBEATS * self.interval
        try:
            await self.broker.record_instance(self.instance, self.report(now), now, ttl)
        except Exception as exc:
            if self.publish_failures % WARN_EVERY == 0:
                log.warning(
                    "could not publish this instance's telemetry (%d in a row): %s",
                    self.publish_failures + 1,
                    exc,
                    extra={"instance": self.instance},
                )
            self.publish_failures += 1
        else:
            self.publish_failures = 0

    async def run_once(self, *, publish: bool = True) -> None:
        """Extend every held lease, act on lost and cancelled ones, report the workers and,
        with `publish`, this process's telemetry."""
        now = self.clock.now()
        pool = self.pool
        leases = list(pool.held.values())
        if leases:
            statuses = await self.broker.extend(leases, self.lease_for, now)
            for lease, status in zip(leases, statuses, strict=True):
                pool.lease_status(lease, status)
        pid = os.getpid()
        workers = list(pool.workers.values())
        live = [s for s in workers if s.active]
        types = tuple(self.registry.names())
        infos = [
            s.info(self.instance, self.host, pid, now, types, draining=self.draining) for s in live
        ]
        if infos:  # the instance's details, once: on its lowest-numbered worker
            infos[0] = msgspec.structs.replace(
                infos[0], type_info=self._type_info(types), periodic=self.periodic()
            )
        await self.broker.record_workers(infos)
        if publish:
            await self.publish(now)
        if self.unknown_types.wanted:  # a task of a type not run here: who runs it?
            alive = await live_workers(self.broker, self.interval, now)
            self.unknown_types.update(alive)
        self._forgotten.difference_update(s.id for s in live)  # a number in use again
        ended = [s.id for s in workers if s not in live and s.id not in self._forgotten]
        if ended:  # retired by the autoscaler: leave the registry
            await self.broker.forget_workers(ended)
            self._forgotten.update(ended)

    def _type_info(self, names: tuple[str, ...]) -> tuple[TypeInfo, ...]:
        """The registered task types in full."""
        specs = [self.registry.get(name) for name in names]
        return tuple(
            TypeInfo(
                name=name,
                executor=spec.executor,
                timeout=spec.timeout,
                max_attempts=spec.max_attempts,
                queue=spec.queue,
                priority=spec.priority.name,
            )
            for name, spec in zip(names, specs, strict=True)
        )
