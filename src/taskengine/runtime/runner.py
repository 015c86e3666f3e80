"""Runs one leased task on the right executor and turns what happened into an Outcome."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from concurrent.futures import Executor, Future
from typing import Any, NamedTuple

from taskengine.clock import Clock
from taskengine.errors import (
    ResourceCapExceeded,
    TaskEngineError,
    TaskFailed,
    TaskTimeout,
    ValidationError,
)
from taskengine.model import Lease, Outcome, ResultStatus, TaskResult
from taskengine.model import outcome as outcomes
from taskengine.model.records import expiry_error
from taskengine.model.serializer import DEFAULT_MAX_RESULT_BYTES, cap_text, check_storable
from taskengine.policy.breaker import BreakerRegistry, CircuitBreaker
from taskengine.policy.retry import NoRetry, Retry, RetryPolicy, Snooze, decide_failure
from taskengine.registry import Registry, TaskContext, TaskSpec, UnknownTaskType
from taskengine.runtime.child_progress import RunKey
from taskengine.runtime.known_types import KnownTypes
from taskengine.runtime.process_pool import ProcessExecutor
from taskengine.runtime.progress import ProgressBoard
from taskengine.runtime.tracebacks import format_traceback
from taskengine.runtime.workers import CANCELLED, LEASE_LOST, TIMED_OUT, Worker
from taskengine.tracing import WorkerTracing, ran, running

log = logging.getLogger("taskengine.tasks")
# Errors raised in a child process arrive by name; these mean "do not retry" there too.
NOT_RETRYABLE_IN_CHILD = frozenset(
    {"NoRetry", "ValidationError", "InvalidPayload", "TaskRefused", "TaskInputError"}
)


class Abandoned(NamedTuple):
    """A thread run that was stopped (timeout, cancel, shutdown) but whose thread still runs."""

    task_id: str
    task_type: str
    worker_id: str
    since: float  # loop time when its run was stopped


def _take_back(sent: int) -> None:
    """Take back the cancellations the worker sent to this run (delivered or swallowed), so a
    cancellation of the worker itself still stands."""
    current = asyncio.current_task()
    if current is not None:
        for _ in range(min(sent, current.cancelling())):
            current.uncancel()


def _worker_cancelled() -> bool:
    """True if the running worker coroutine has a cancellation of its own pending."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


class Runner:
    """Executes leases: checks the breaker, runs the handler under its timeout, decides."""

    def __init__(
        self,
        registry: Registry,
        clock: Clock,
        *,
        retry_policy: RetryPolicy,
        breakers: BreakerRegistry,
        threads: Executor,
        processes: ProcessExecutor,
        unknown_type_grace: float = 600.0,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        rng: random.Random | None = None,
        progress: ProgressBoard | None = None,
    ) -> None:
        self._registry = registry
        self.progress = progress  # where a run's ctx.progress goes; None: nowhere
        self._clock = clock
        self._retry = retry_policy
        self._breakers = breakers
        self._threads = threads
        self._processes = processes
        self._rng = rng or random.Random()
        self._max_bytes = max_result_bytes  # of a stored result, and of each error text
        self.abandoned: dict[Future[Any], Abandoned] = {}  # stopped runs still in a thread
        self.unknown_types = KnownTypes(unknown_type_grace)
        self.tracing: WorkerTracing | None = None  # set by the worker when it starts

    async def run(self, worker: Worker, lease: Lease) -> Outcome | None:
        """Run `lease` on `worker`; return the outcome to settle (None: the lease was lost).

        Whatever the handler does (returns, raises, raises CancelledError or another
        BaseException, swallows an interruption), the run ends in an outcome; only a
        cancellation of the worker coroutine itself propagates.
        """
        tracing = self.tracing
        if tracing is not None:
            with running(tracing, lease.record, worker.id) as span:
                outcome = await self._guarded(worker, lease)
                ran(tracing, span, lease.record, outcome)
                return outcome
        return await self._guarded(worker, lease)

    async def _guarded(self, worker: Worker, lease: Lease) -> Outcome | None:
        try:
            return await self._run(worker, lease)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an engine bug: the attempt still counts, never a loop
            log.exception("running %s failed inside the engine", lease.task_id)
            return self._crashed(lease, worker, exc)

    async def _run(self, worker: Worker, lease: Lease) -> Outcome | None:
        record = lease.record
        now = self._clock.now()
        spec = self._registry.find(record.type)
        if spec is None:
            return self._unknown_type(lease, worker, now)
        # Brokers dead-letter a task whose last lease ran out; a Redis task stored before its
        # hash kept max_attempts is requeued instead, and ends here, with the same words.
        if record.attempt > record.max_attempts:
            exhausted = TaskEngineError(expiry_error(record.max_attempts, record.max_attempts))
            return outcomes.dead(lease, self._failure(lease, worker, exhausted, now, 0.0))
        # A type with breakers of its own (TaskSpec.breaker False) is not counted here.
        breaker = self._breakers.get(spec.name) if spec.breaker else None
        if breaker is not None and not breaker.allow(now):
            return outcomes.snooze(lease, now + max(breaker.retry_after(now), 0.001))
        worker.begin(lease, now)
        data: Any = None
        error: BaseException | None = None
        try:
            data = await self._execute(spec, lease, worker)
            check_storable(data, self._max_bytes)
        except BaseException as exc:  # every ending is decided below, none escapes
            error = exc
        finished = self._clock.now()
        worker.end(finished)
        reason = worker.cancel_reason
        if reason is not None:
            _take_back(worker.cancels_sent)
            if reason in (CANCELLED, LEASE_LOST):
                _release(breaker, finished)
                return self._interrupted(lease, worker, reason, finished)
            if reason == TIMED_OUT:  # whatever the handler did after its deadline
                error = TaskTimeout(f"timed out after {record.timeout:g} s")
            elif isinstance(error, asyncio.CancelledError):  # SHUTDOWN interrupted the run
                _release(breaker, finished)
                return outcomes.released(lease)
        elif isinstance(error, asyncio.CancelledError) and _worker_cancelled():
            raise error  # the worker itself is being cancelled: the pool hands the task back
        if error is None:
            if breaker is not None:
                breaker.record_success(finished)
            return outcomes.succeeded(
                lease,
                TaskResult(
                    task_id=record.id,
                    status=ResultStatus.SUCCESS,
                    data=data,
                    duration=finished - worker.busy_since,
                    worker_id=worker.id,
                    completed_at=finished,
                    attempt=record.attempt,
                ),
            )
        if isinstance(error, Snooze):
            _release(breaker, finished)
            return outcomes.snooze(lease, finished + error.delay)
        if refused_input(error):
            _release(breaker, finished)  # the caller's mistake, not a failing dependency
        elif breaker is not None:
            breaker.record_failure(finished)
        return self._failed(spec, lease, worker, error, finished)

    def _unknown_type(self, lease: Lease, worker: Worker, now: float) -> Outcome:
        """A type this instance does not know: give it back for one that does (a rolling
        deploy), until no live instance has known it for the configured grace."""
        record = lease.record
        retry_at = self.unknown_types.retry_at(record.type, now)
        if retry_at is not None:
            return outcomes.snooze(lease, retry_at)
        error = UnknownTaskType(f"unknown task type {record.type!r}: no live instance runs it")
        return outcomes.dead(lease, self._failure(lease, worker, error, now, 0.0))

    def _crashed(self, lease: Lease, worker: Worker, exc: BaseException) -> Outcome:
        now = self._clock.now()
        try:
            spec = self._registry.find(lease.record.type)
            if spec is not None:
                return self._failed(spec, lease, worker, exc, now)
        except Exception:
            log.exception("could not decide the failure of %s", lease.task_id)
        failure = self._failure(lease, worker, exc, now, 0.0)
        return outcomes.dead(lease, failure, format_traceback(exc))

    async def _execute(self, spec: TaskSpec, lease: Lease, worker: Worker) -> Any:
        record = lease.record
        payload = spec.convert(record.payload)
        timeout = record.timeout
        if spec.executor == "process":
            run = RunKey(record.id, lease.token, record.attempt)
            return await self._processes.run(spec, payload, timeout, run)
        args: tuple[Any, ...] = (payload,)
        if spec.wants_context:
            board = self.progress
            report = None if board is None else board.reporter(lease)
            worker.context = TaskContext(record.id, record.attempt, worker.id, report)
            args = (payload, worker.context)
        # One timer handle, not asyncio.timeout (a third of the cost per run): at the deadline
        # the worker's run is cancelled like any other interruption.
        loop = asyncio.get_running_loop()
        deadline = loop.call_at(loop.time() + timeout, worker.cancel_run, lease.token, TIMED_OUT)
        try:
            if spec.executor == "async":
                return await spec.fn(*args)
            return await self._in_thread(spec, args, lease, worker)
        finally:
            deadline.cancel()

    @property
    def overrunning_threads(self) -> int:
        """Thread runs stopped (timed out, cancelled, shut down) that still hold a thread."""
        return len(self.abandoned)

    async def _in_thread(
        self, spec: TaskSpec, args: tuple[Any, ...], lease: Lease, worker: Worker
    ) -> Any:
        if self.tracing is None:
            future = self._threads.submit(spec.fn, *args)
        else:  # the handler's own spans are children of the run span
            future = self._threads.submit(contextvars.copy_context().run, spec.fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():  # a thread cannot be killed: account for it until it ends
                loop = asyncio.get_running_loop()
                self.abandoned[future] = Abandoned(lease.task_id, spec.name, worker.id, loop.time())
                # called in the thread as it ends; one dict operation is atomic
                future.add_done_callback(lambda done: self.abandoned.pop(done, None))
            raise

    def _interrupted(self, lease: Lease, worker: Worker, reason: str, now: float) -> Outcome | None:
        if reason != CANCELLED:
            return None  # lease lost: whoever holds it now settles it
        result = TaskResult(
            task_id=lease.task_id,
            status=ResultStatus.CANCELLED,
            duration=now - worker.busy_since,
            worker_id=worker.id,
            completed_at=now,
            error="cancelled while running",
            attempt=lease.record.attempt,
        )
        return outcomes.cancelled(lease, result)

    def _failed(
        self, spec: TaskSpec, lease: Lease, worker: Worker, exc: BaseException, now: float
    ) -> Outcome:
        record = lease.record
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
        retry = decision.kind == "retry" and decision.run_at is not None
        dead_reason = None if retry else decision.reason
        result = self._failure(lease, worker, exc, now, now - worker.busy_since, dead_reason)
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
        trace = format_traceback(exc)
        if retry and decision.run_at is not None:
            return outcomes.retry(lease, result, decision.run_at, trace)
        return outcomes.dead(lease, result, trace)

    def _failure(
        self,
        lease: Lease,
        worker: Worker,
        exc: BaseException,
        now: float,
        duration: float,
        dead_reason: str | None = None,
    ) -> TaskResult:
        """The failed attempt's result; its error (with the dead-letter reason, if any, after
        it) within the size cap."""
        timed_out = isinstance(exc, TaskTimeout)
        suffix = f" ({dead_reason})" if dead_reason else ""
        return TaskResult(
            task_id=lease.task_id,
            status=ResultStatus.TIMEOUT if timed_out else ResultStatus.FAILURE,
            duration=duration,
            worker_id=worker.id,
            completed_at=now,
            error=cap_text(describe(exc), self._max_bytes - len(suffix.encode())) + suffix,
            attempt=lease.record.attempt,
        )


def _release(breaker: CircuitBreaker | None, now: float) -> None:
    """Hand back the probe slot a run may hold (nothing to do for an uncounted type)."""
    if breaker is not None:
        breaker.release(now)


def refused_input(exc: BaseException) -> bool:
    """True for errors that say the task itself is wrong (NoRetry, invalid input, a resource
    cap passed): retrying cannot help, and they say nothing about the health of what the
    handler depends on."""
    return isinstance(exc, NoRetry | ValidationError | ResourceCapExceeded) or (
        isinstance(exc, TaskFailed) and exc.error_type in NOT_RETRYABLE_IN_CHILD
    )


def describe(exc: BaseException) -> str:
    """A one-line description of an error for the attempt history; never raises, and always
    storable (a lone surrogate is escaped, an unprintable error says so)."""
    try:
        text = str(exc)
    except Exception:
        text = "(unprintable)"
    if not isinstance(exc, TaskFailed):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
