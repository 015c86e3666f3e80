"""The engine: composes the pool, fetcher, completer and the background services (heartbeat,
cancel watch, reaper, retention, autoscaler, scheduler: one file each), and shuts down
gracefully (stop reserving, release the buffer, let runs finish within the grace period,
interrupt and release the rest, settle everything, leave the registry)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from taskengine.brokers.base import BrokerBackend
from taskengine.clock import SYSTEM_CLOCK, Clock
from taskengine.errors import ShutdownIncomplete
from taskengine.metrics import Metrics
from taskengine.model import Task
from taskengine.model.limits import Limit
from taskengine.policy.breaker import BreakerConfig, BreakerRegistry
from taskengine.policy.cron import CronEntry
from taskengine.policy.retry import RetryPolicy
from taskengine.registry import Registry
from taskengine.runtime.autoscaler import Autoscaler
from taskengine.runtime.cancel_watch import CancelWatch
from taskengine.runtime.completer import Completer
from taskengine.runtime.control_watch import ControlWatch
from taskengine.runtime.fetcher import Fetcher
from taskengine.runtime.heartbeat import Heartbeat, Report
from taskengine.runtime.pool import Pool
from taskengine.runtime.process_pool import ProcessExecutor
from taskengine.runtime.progress import ProgressBoard, ProgressFlusher
from taskengine.runtime.reaper import REAPER, Reaper
from taskengine.runtime.retention import RETENTION, Retention
from taskengine.runtime.runner import Runner
from taskengine.runtime.scheduler import SCHEDULER, Scheduler
from taskengine.runtime.service import PeriodicService
from taskengine.runtime.status import EngineStatus, worker_statuses
from taskengine.runtime.threads import DaemonThreadPool
from taskengine.runtime.watchdog import ADVICE, Culprit, LoopWatchdog, Overrun
from taskengine.settings import Settings
from taskengine.tracing import Tracing

log = logging.getLogger("taskengine.runtime")
INTERRUPT_WAIT = 2.0  # shutdown: how long interrupted runs get to hand their task back
SETTLE_WAIT = 30.0  # shutdown: how long the last outcomes get to reach the broker
LEAVE_WAIT = 5.0  # shutdown: leaving the worker registry and the leader leases


def new_instance_id() -> str:
    """A readable, unique id for this engine process: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Engine:
    """One engine process's worker pool against a broker."""

    def __init__(
        self,
        broker: BrokerBackend,
        registry: Registry,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        instance: str | None = None,
        metrics: Metrics | None = None,
        periodic: Sequence[CronEntry] = (),
        build_periodic: Callable[[CronEntry, float, str], Task] | None = None,
        tracing: Tracing | None = None,
        limits: Sequence[Limit] = (),
    ) -> None:
        self.broker = broker
        self.limits = list(limits)  # declared in code; stored in the broker at start
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.instance = instance or new_instance_id()
        self.host = socket.gethostname()
        self.metrics = metrics or Metrics()
        self.tracing = tracing or Tracing()
        self.breakers = BreakerRegistry(
            BreakerConfig(
                consecutive_failures=settings.breaker_failures,
                open_for=settings.breaker_open_for,
            )
        )
        self._threads = DaemonThreadPool(settings.threads, thread_name_prefix="taskengine")
        self.progress = ProgressBoard(clock)
        self._processes = ProcessExecutor(
            settings.process_pool,
            memory_mb=settings.process_memory_mb,
            cpu_seconds=settings.process_cpu_seconds,
            on_progress=self.progress.post_run,
        )
        self.runner = Runner(
            registry,
            clock,
            retry_policy=RetryPolicy(base=settings.retry_base, cap=settings.retry_cap),
            breakers=self.breakers,
            threads=self._threads,
            processes=self._processes,
            unknown_type_grace=settings.unknown_type_grace,
            max_result_bytes=settings.max_result_bytes,
            progress=self.progress,
        )
        self.runner.parent_results = functools.partial(parent_results, broker)
        self.completer = Completer(broker, clock, settings.settle_batch, self.progress)
        self.pool = Pool(
            self.runner,
            self.completer,
            clock,
            instance=self.instance,
            prefetch=settings.buffer_size,
            metrics=self.metrics,
            adaptive=settings.prefetch is None,
        )
        self.fetcher = Fetcher(
            broker,
            clock,
            instance=self.instance,
            lease_for=settings.lease_for,
            batch=settings.reserve_batch,
            queues=settings.queues,
            idle_wait=settings.idle_wait,
            capacity=self.pool.capacity,
            deliver=self.pool.deliver,
        )
        self.pool.space_available = self.fetcher.space_available
        self.heartbeat = Heartbeat(
            broker,
            clock,
            self.pool,
            registry,
            self.runner.unknown_types,
            instance=self.instance,
            host=self.host,
            lease_for=settings.lease_for,
            every=settings.heartbeat_every,
            periodic=lambda: self.scheduler.status(),
        )
        self.cancel_watch = CancelWatch(broker, self.pool, every=settings.cancel_poll_every)
        self.control_watch = ControlWatch(
            broker, self, instance=self.instance, every=settings.cancel_poll_every
        )
        # What a remote SHUTDOWN does; `serve` sets it to stop its HTTP server too.
        self.on_shutdown: Callable[[], None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self.progress_flusher = ProgressFlusher(broker, clock, self.progress)
        self.reaper = Reaper(broker, clock, instance=self.instance, every=settings.reaper_every)
        self.retention = Retention(
            broker,
            clock,
            instance=self.instance,
            every=settings.retention_every,
            finished_ttl=settings.finished_ttl,
            dead_ttl=settings.dead_ttl,
        )
        low, high = settings.scale_bounds
        self.autoscaler = Autoscaler(self.pool, self.fetcher, low=low, high=high)
        self.scheduler = Scheduler(
            broker,
            clock,
            periodic if build_periodic is not None else (),
            build_periodic or _no_build,
            instance=self.instance,
            lease_for=settings.scheduler_every * 5,
            catch_up=settings.cron_catch_up,
        )
        self.scheduling = PeriodicService(
            "scheduler", settings.scheduler_every, self.scheduler.run_once
        )
        self.telemetry: list[PeriodicService] = []  # set by `publish`
        self._loop: asyncio.AbstractEventLoop | None = None
        self.watchdog: LoopWatchdog | None = None
        if settings.watchdog:
            self.watchdog = LoopWatchdog(
                self._culprit,
                self._overruns,
                settings.threads,
                instance=self.instance,
                lease_for=settings.lease_for,
                margin=settings.watchdog_margin,
            )
        self._force = asyncio.Event()
        self._state = "new"
        self._stopped = asyncio.Event()

    @property
    def state(self) -> str:
        """new, running, stopping or stopped."""
        return self._state

    def health(self) -> dict[str, str]:
        """What /readyz reports of this pool: "ok" per duty, or what is wrong with it."""
        checks = {"pool": "ok" if self._state == "running" else self._state}
        failing = {
            "settle": self.completer.failing,
            "reserve": self.fetcher.failures,
            "heartbeat": self.heartbeat.failures,
        }
        for duty, failures in failing.items():
            checks[duty] = f"failing ({failures} in a row)" if failures else "ok"
        return checks

    def status(self, now: float | None = None) -> EngineStatus:
        """The pool, its workers, the breakers and overrunning threads as of `now` (default:
        the clock's): what the sampler, the metrics, the live feed and Prometheus read."""
        now = self.clock.now() if now is None else now
        pool = self.pool
        return EngineStatus(
            instance=self.instance,
            at=now,
            size=pool.size,
            busy=pool.busy,
            buffered=pool.waiting,
            overrunning_threads=self.runner.overrunning_threads,
            workers=worker_statuses(
                pool.workers.values(), self.instance, self.host, os.getpid(), now
            ),
            breakers=self.breakers.snapshots(now),
        )

    async def start(self) -> None:
        """Start the workers and every background duty."""
        if self._state != "new":
            return
        self._state = "running"
        self._loop = asyncio.get_running_loop()
        await self.broker.start()
        if self.limits:  # the code's limits win over a run-time change until the next start
            await self.broker.set_limits(self.limits)
        if self.watchdog is not None:
            self.watchdog.start()
        self.runner.tracing = self.completer.tracing = self.tracing.for_worker()
        self.pool.resize(self.settings.workers)
        await self.completer.start()
        await self.fetcher.start()
        for service in self._services():
            await service.start()
        # the registry at once; the first telemetry report waits for the next heartbeat, so
        # starting takes no longer than it did (a task may be running already)
        await self.heartbeat.run_once(publish=False)
        log.info(
            "worker started",
            extra={"instance": self.instance, "workers": self.settings.workers},
        )

    def publish(self, report: Report | None, sampling: PeriodicService | None = None) -> None:
        """Publish `report` (None: nothing) with every heartbeat (ADR 0033); run `sampling`
        beside the pool (call before `start`)."""
        self.heartbeat.report = report
        self.telemetry = [sampling] if sampling is not None else []

    def _services(self) -> list[PeriodicService]:
        services = [
            self.heartbeat,
            self.cancel_watch,
            self.control_watch,
            self.progress_flusher,
            self.reaper,
            self.retention,
        ]
        services += self.telemetry
        if self.scheduler.entries:
            services.append(self.scheduling)
        if self.autoscaler.low != self.autoscaler.high:
            services.append(self.autoscaler)
        return services

    # -- remote control (ADR 0036; the control watch calls these) ------------------------------

    @property
    def draining(self) -> bool:
        """True while a drain holds: no task is taken, the running ones finish."""
        return self.heartbeat.draining

    async def drain(self) -> None:
        """Stop taking tasks and hand the buffered leases back; the running ones finish."""
        if self._state != "running" or self.draining:
            return
        for service in (self.fetcher, self.autoscaler):
            await service.stop()
        released = self.pool.release_buffered()
        self.heartbeat.draining = True  # once nothing more can start: what it reports holds
        log.info("draining", extra={"instance": self.instance, "released": released})

    async def undrain(self) -> None:
        """Take tasks again after a drain."""
        if self._state != "running" or not self.draining:
            return
        self.heartbeat.draining = False
        await self.fetcher.start()
        if self.autoscaler in self._services():
            await self.autoscaler.start()
        log.info("resumed taking tasks", extra={"instance": self.instance})

    def resize(self, size: int) -> None:
        """Run `size` workers from now on; the autoscaler keeps to that size too."""
        if self._state != "running":
            return
        self.autoscaler.low = self.autoscaler.high = size
        log.info("pool resized", extra={"from": self.pool.size, "to": size})
        self.pool.resize(size)

    def request_shutdown(self) -> None:
        """Begin a graceful stop, as on SIGTERM (through `on_shutdown` if set)."""
        if self._state != "running":
            return
        if self.on_shutdown is not None:
            self.on_shutdown()
        elif self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(self._stop_logged())

    async def _stop_logged(self) -> None:
        try:
            await self.stop()
        except ShutdownIncomplete:
            log.exception("shutdown asked remotely did not hand everything back")

    async def report(self) -> None:
        """Record the workers in the registry now (their drain flag, a new size)."""
        await self.heartbeat.run_once(publish=False)

    # -- the watchdog's view (called from its thread) ------------------------------------------

    def _culprit(self) -> Culprit:
        """The run holding the loop now, if a worker of the pool runs it."""
        loop = self._loop
        current = asyncio.current_task(loop) if loop is not None else None
        for worker in list(self.pool.workers.values()):
            lease = worker.lease
            if current is not None and worker.task is current and lease is not None:
                record = lease.record
                return Culprit(
                    f"worker {worker.id}", lease.task_id, record.type, worker.id, record.timeout
                )
        return Culprit(current.get_name() if current is not None else "a callback outside tasks")

    def _overruns(self) -> list[Overrun]:
        """Thread runs stopped but still in their thread, with how long ago they were stopped."""
        loop = self._loop
        if loop is None:
            return []
        now = loop.time()
        return [
            Overrun(run.task_id, run.task_type, run.worker_id, now - run.since)
            for run in list(self.runner.abandoned.values())
        ]

    # -- one round of each background service, now (tests and scripts) ---------------------

    async def heartbeat_once(self) -> None:
        """Extend every held lease, act on lost and cancelled ones, report the workers."""
        await self.heartbeat.run_once()

    async def sample_once(self) -> None:
        """One round of the telemetry sampling set by `publish` (tests)."""
        for service in self.telemetry:
            await service.run_once()

    async def cancel_watch_once(self) -> int:
        """Stop running tasks whose cancel was asked elsewhere; return how many."""
        return await self.cancel_watch.run_once()

    async def progress_once(self) -> int:
        """Write the runs' pending progress reports now; return how many were stored."""
        return await self.progress_flusher.run_once()

    async def reap_once(self) -> list[str]:
        """If this instance leads, requeue tasks whose lease expired."""
        return await self.reaper.run_once()

    async def purge_once(self) -> int:
        """If this instance leads, delete finished tasks past their retention."""
        return await self.retention.run_once()

    async def autoscale_once(self) -> int:
        """Resize the pool by backlog; return the new size."""
        return await self.autoscaler.run_once()

    # -- shutdown ---------------------------------------------------------------------------

    def force_stop(self) -> None:
        """Skip the rest of the grace period (a second signal)."""
        self._force.set()

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully: nothing accepted is lost, nothing finished is run again.

        Every step runs, bounded in time, even when an earlier one failed (say the broker went
        away during the grace period). If outcomes could not be handed to the broker,
        ShutdownIncomplete names their tasks at the end: their leases expire and the reaper
        queues them again.
        """
        if self._state in ("stopping", "stopped"):
            await self._stopped.wait()
            return
        if self._state == "new":
            self._state = "stopped"
            self._stopped.set()
            return
        self._state = "stopping"
        grace = self.settings.shutdown_grace if grace is None else grace
        failed: list[str] = []
        released = interrupted = 0
        try:
            for service in (self.fetcher, self.autoscaler, self.scheduling):
                await _step(service.stop(), failed, "stop reserving")
            released = self.pool.release_buffered()
            await self._wait_idle(grace)
            interrupted = self.pool.interrupt_running()
            if interrupted:
                await self._wait_idle(INTERRUPT_WAIT, forced=False)
            await self.pool.stop_workers()
            for service in (
                self.heartbeat,
                self.cancel_watch,
                self.control_watch,
                self.progress_flusher,
                *self.telemetry,
            ):
                await _step(service.stop(), failed, service.name)
            await _step(self.completer.stop(SETTLE_WAIT), failed, "settle")
            for service in (self.reaper, self.retention):
                await _step(service.stop(), failed, service.name)
            await _step(self._leave(), failed, "leave the registry")
        finally:
            self._threads.shutdown(wait=False, cancel_futures=True)
            await _step(self._processes.close(), failed, "close the process pool")
            self._report_abandoned()
            if self.watchdog is not None:
                self.watchdog.stop()
            self._state = "stopped"
            self._stopped.set()
        unsettled = self.completer.pending_ids()
        log.info(
            "worker stopped",
            extra={
                "instance": self.instance,
                "released": released,
                "interrupted": interrupted,
                "unsettled": len(unsettled),
            },
        )
        if unsettled:
            raise ShutdownIncomplete(
                f"{len(unsettled)} outcomes could not be handed to the broker (first: "
                f"{', '.join(unsettled[:5])}); their tasks run again once their leases expire"
            )

    def _report_abandoned(self) -> None:
        """Name the tasks whose thread still runs: the process exits without them (daemons)."""
        ids = [run.task_id for run in list(self.runner.abandoned.values())]
        if ids:
            log.error(
                "shutdown: abandoned the threads of %d runs that never returned (%s); %s",
                len(ids),
                ", ".join(ids[:10]),
                ADVICE,
                extra={"task_ids": ids, "instance": self.instance},
            )

    async def _leave(self) -> None:
        async with asyncio.timeout(LEAVE_WAIT):
            await self.broker.forget_workers([worker.id for worker in self.pool.workers.values()])
            for name in (REAPER, RETENTION, SCHEDULER):
                await self.broker.resign(name, self.instance)
            # last, so it cannot hold up leaving: the final counts, every settle included;
            # they stay in the cluster's figures until they expire
            await self.heartbeat.publish(self.clock.now())

    async def _wait_idle(self, timeout: float, *, forced: bool = True) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pool.busy and loop.time() < deadline:
            if forced and self._force.is_set():
                return
            await asyncio.sleep(0.02)

    async def wait_stopped(self) -> None:
        """Wait until `stop` has finished."""
        await self._stopped.wait()

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Wait until no task is held here and the broker has no due task (tests, scripts)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if not self.pool.held and not self.completer.pending:
                got = await self.fetcher.run_once()
                if not got and not self.pool.held and not self.completer.pending:
                    return
            await asyncio.sleep(0.005)
        raise TimeoutError(f"still busy after {timeout} s")


async def _step(action: Awaitable[object], failed: list[str], name: str) -> None:
    """Await one shutdown step; a failure is logged and noted, and shutdown goes on."""
    try:
        await action
    except Exception:
        log.exception("shutdown: %s failed", name)
        failed.append(name)


def _no_build(entry: CronEntry, slot: float, key: str) -> Task:
    raise AssertionError("no periodic tasks without a builder")


async def parent_results(broker: BrokerBackend, ids: Sequence[str]) -> list[Any]:
    """The result data of each parent, in order (None for one purged or without a result)."""
    records = await broker.get(list(ids))
    return [None if r is None or r.result is None else r.result.data for r in records]
