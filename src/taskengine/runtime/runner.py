"""Runs one leased task on the right executor and turns what happened into an Outcome."""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskengine.clock import Clock
from taskengine.errors import TaskEngineError, TaskFailed, TaskTimeout, ValidationError
from taskengine.model import Lease, Outcome, ResultStatus, TaskResult
from taskengine.model import outcome as outcomes
from taskengine.model.serializer import to_json
from taskengine.policy.breaker import BreakerRegistry
from taskengine.policy.retry import NoRetry, Retry, RetryPolicy, Snooze, decide_failure
from taskengine.registry import Registry, TaskContext, TaskSpec
from taskengine.runtime.process_pool import ProcessExecutor
from taskengine.runtime.slots import WorkerSlot

log = logging.getLogger("taskengine.tasks")
_PLAIN = (str, int, float, bool, type(None))
# Errors raised in a child process arrive by name; these mean "do not retry" there too.
NOT_RETRYABLE_IN_CHILD = frozenset(
    {"NoRetry", "ValidationError", "InvalidPayload", "TaskRefused", "TaskInputError"}
)

# Why a run was interrupted from outside (WorkerSlot.cancel_run) and what is settled then.
CANCELLED = "cancelled"  # cancel requested: settle CANCELLED
LEASE_LOST = "lease_lost"  # another worker may have it now: settle nothing
SHUTDOWN = "shutdown"  # the pool is stopping: hand it back, no attempt burned
TIMED_OUT = "timed_out"  # past its timeout: a failure like any other (retry or dead)


def _timed_out(timeout: float) -> TaskTimeout:
    """Take back the deadline's cancellation of this task and say why the run ended."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()
    return TaskTimeout(f"timed out after {timeout:g} s")


class Runner:
    """Executes leases: checks the breaker, runs the handler under its timeout, decides."""

    def __init__(
        self,
        registry: Registry,
        clock: Clock,
        *,
        retry_policy: RetryPolicy,
        breakers: BreakerRegistry,
        threads: ThreadPoolExecutor,
        processes: ProcessExecutor,
        rng: random.Random | None = None,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._retry = retry_policy
        self._breakers = breakers
        self._threads = threads
        self._processes = processes
        self._rng = rng or random.Random()
        self.overrunning_threads = 0  # timed-out thread runs still occupying a thread

    async def run(self, slot: WorkerSlot, lease: Lease) -> Outcome | None:
        """Run `lease` on `slot`; return the outcome to settle (None: the lease was lost)."""
        record = lease.record
        now = self._clock.now()
        try:
            spec = self._registry.get(record.type)
        except ValidationError as exc:
            return outcomes.dead(lease, self._failure(lease, slot, exc, now, 0.0))
        if record.attempt > record.max_attempts:  # a lease expired on the last attempt
            error = TaskEngineError(f"attempts exhausted ({record.max_attempts}): lease expired")
            return outcomes.dead(lease, self._failure(lease, slot, error, now, 0.0))
        breaker = self._breakers.get(spec.name)
        if not breaker.allow(now):
            return outcomes.snooze(lease, now + max(breaker.retry_after(now), 0.001))
        slot.begin(lease, now)
        try:
            data = await self._execute(spec, lease, slot)
        except asyncio.CancelledError:
            reason = slot.cancel_reason
            if reason is None:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            breaker.release(self._clock.now())
            return self._interrupted(lease, slot, reason)
        except Snooze as exc:
            breaker.release(self._clock.now())
            return outcomes.snooze(lease, self._clock.now() + exc.delay)
        except Exception as exc:
            finished = self._clock.now()
            if refused_input(exc):
                breaker.release(finished)  # the caller's mistake, not a failing dependency
            else:
                breaker.record_failure(finished)
            return self._failed(spec, lease, slot, exc, finished)
        finally:
            slot.end(self._clock.now())
        finished = self._clock.now()
        breaker.record_success(finished)
        return outcomes.succeeded(
            lease,
            TaskResult(
                task_id=record.id,
                status=ResultStatus.SUCCESS,
                data=data,
                duration=finished - slot.busy_since,
                worker_id=slot.id,
                completed_at=finished,
                attempt=record.attempt,
            ),
        )

    async def _execute(self, spec: TaskSpec, lease: Lease, slot: WorkerSlot) -> Any:
        record = lease.record
        payload = spec.convert(record.payload)
        timeout = record.timeout
        if spec.executor == "process":
            data = await self._processes.run(spec, payload, timeout)
        else:
            args: tuple[Any, ...] = (payload,)
            if spec.wants_context:
                slot.context = TaskContext(record.id, record.attempt, slot.id)
                args = (payload, slot.context)
            # One timer handle, not asyncio.timeout (a third of the cost per run): at the
            # deadline the slot's run is cancelled like any other interruption.
            loop = asyncio.get_running_loop()
            deadline = loop.call_at(loop.time() + timeout, slot.cancel_run, record.id, TIMED_OUT)
            try:
                if spec.executor == "async":
                    data = await spec.fn(*args)
                else:
                    data = await self._in_thread(spec, args)
            except asyncio.CancelledError:
                if slot.cancel_reason != TIMED_OUT:
                    raise
                raise _timed_out(timeout) from None
            finally:
                deadline.cancel()
            if slot.cancel_reason == TIMED_OUT:  # the handler swallowed the cancellation
                raise _timed_out(timeout)
        if not isinstance(data, _PLAIN):
            to_json(data)  # refuse a result that is not JSON-serialisable
        return data

    async def _in_thread(self, spec: TaskSpec, args: tuple[Any, ...]) -> Any:
        future = self._threads.submit(spec.fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():  # a thread cannot be killed: account for it until it ends
                self.overrunning_threads += 1
                future.add_done_callback(self._thread_ended)
            raise

    def _thread_ended(self, _: object) -> None:
        self.overrunning_threads -= 1

    def _interrupted(self, lease: Lease, slot: WorkerSlot, reason: str) -> Outcome | None:
        if reason == SHUTDOWN:
            return outcomes.released(lease)
        if reason == CANCELLED:
            now = self._clock.now()
            result = TaskResult(
                task_id=lease.task_id,
                status=ResultStatus.CANCELLED,
                duration=now - slot.busy_since,
                worker_id=slot.id,
                completed_at=now,
                error="cancelled while running",
                attempt=lease.record.attempt,
            )
            return outcomes.cancelled(lease, result)
        return None  # lease lost: whoever holds it now settles it

    def _failed(
        self, spec: TaskSpec, lease: Lease, slot: WorkerSlot, exc: Exception, now: float
    ) -> Outcome:
        record = lease.record
        result = self._failure(lease, slot, exc, now, now - slot.busy_since)
        retryable = spec.retryable and not refused_input(exc)
        requested = exc.delay if isinstance(exc, Retry) else None
        decision = decide_failure(
            record.attempt,
            record.max_attempts,
            now,
            self._retry,
            self._rng,
            retryable=retryable,
            requested_delay=requested,
        )
        log.info(
            "task failed",
            extra={
                "task_id": record.id,
                "type": record.type,
                "attempt": record.attempt,
                "error": result.error,
                "decision": decision.kind,
            },
        )
        if decision.kind == "retry" and decision.run_at is not None:
            return outcomes.retry(lease, result, decision.run_at)
        return outcomes.dead(lease, replace_error(result, decision.reason))

    @staticmethod
    def _failure(
        lease: Lease, slot: WorkerSlot, exc: BaseException, now: float, duration: float
    ) -> TaskResult:
        timed_out = isinstance(exc, TaskTimeout)
        return TaskResult(
            task_id=lease.task_id,
            status=ResultStatus.TIMEOUT if timed_out else ResultStatus.FAILURE,
            duration=duration,
            worker_id=slot.id,
            completed_at=now,
            error=describe(exc),
            attempt=lease.record.attempt,
        )


def refused_input(exc: Exception) -> bool:
    """True for errors that say the task itself is wrong (NoRetry, invalid input): retrying
    cannot help, and they say nothing about the health of what the handler depends on."""
    return isinstance(exc, NoRetry | ValidationError) or (
        isinstance(exc, TaskFailed) and exc.error_type in NOT_RETRYABLE_IN_CHILD
    )


def describe(exc: BaseException) -> str:
    """A one-line description of an error for the attempt history."""
    if isinstance(exc, TaskFailed):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def replace_error(result: TaskResult, reason: str) -> TaskResult:
    """The result with the dead-letter reason appended to its error."""
    from msgspec.structs import replace

    return replace(result, error=f"{result.error} ({reason})" if result.error else reason)
