"""App: settings + task registry + broker. Submit tasks, wait for results, build workers."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate
from urllib.parse import urlsplit

import msgspec

from taskengine.brokers import CancelResult, EnqueueResult, ReplayResult, open_broker
from taskengine.brokers.base import BrokerBackend, TaskFilter
from taskengine.clock import SYSTEM_CLOCK, Clock
from taskengine.errors import InvalidWorkflow, TaskNotFound, ValidationError, WorkflowNotFound
from taskengine.handles import P, R, Rest, Submitter, TaskHandle
from taskengine.inspector import Inspector
from taskengine.metrics import Metrics
from taskengine.model import (
    Priority,
    ResultStatus,
    Task,
    TaskRecord,
    TaskResult,
    TaskState,
    new_task,
)
from taskengine.model.ids import new_id
from taskengine.model.limits import Limit, LimitScope, check_limit_values, parse_rate
from taskengine.model.serializer import check_storable, from_json, to_json
from taskengine.model.state import TERMINAL_STATES
from taskengine.model.storable import find_unstorable
from taskengine.model.unique import UniqueLock, unique_lock
from taskengine.policy.cron import CronEntry, check_unique
from taskengine.policy.idempotency import check_batch, check_repeat
from taskengine.registry import (
    ExecutorKind,
    InvalidPayload,
    Registry,
    TaskSpec,
    UnknownTaskType,
    task_name,
)
from taskengine.request import TaskRequest as TaskRequest  # re-exported: App's request
from taskengine.runtime.engine import Engine
from taskengine.runtime.service import PeriodicService
from taskengine.settings import Settings
from taskengine.sync import SyncClient
from taskengine.tracing import Tracing, submitting
from taskengine.workflows import (
    Node,
    Step,
    Workflow,
    nodes_of,
    records_in_order,
    request_of,
    topological,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from taskengine.builtins.config import BuiltinConfig

WORKFLOW_PAGE = 1000  # tasks per broker call when a workflow is read


class App:
    """The entry point of the Python API: your task types, the broker, submit and results.

    It runs only the task types registered on it; `builtins=True` adds the built-in ones
    (`cpu.*`, `io.http`, `io.file`, `io.sqlite`, `time.*`), as `taskengine serve` without
    `--app` does.

    >>> app = App("sqlite:///tasks.db")
    >>> @app.task("email.send", max_attempts=5)
    ... async def send(payload): ...
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock = SYSTEM_CLOCK,
        builtins: bool = False,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if settings is None:
            settings = Settings.from_env(broker_url=broker_url)
        elif broker_url is not None:
            settings = settings.with_changes(broker_url=broker_url)
        self.settings = settings
        self.clock = clock
        self.registry = Registry()
        if builtins:  # imported only here: an App without them never loads their code
            from taskengine.builtins import builtin_registry

            self.registry.merge(builtin_registry(builtin_config(settings)))
        self.metrics = Metrics()
        self.tracing = Tracing(tracer_provider)  # OpenTelemetry, when an SDK is set up
        self.periodic_tasks: list[CronEntry] = list(settings.cron)
        self._broker: BrokerBackend | None = None
        self._engine: Engine | None = None
        self._sync: SyncClient | None = None
        self._sync_lock = threading.Lock()
        self._limits: dict[tuple[LimitScope, str], Limit] = {}
        for spec in settings.queue_limits:  # validated with the settings
            self._limits[(LimitScope.QUEUE, spec.queue)] = spec.limit()
        # the faces' door to tasks, queues and workers
        self.inspector = Inspector(self)

    def task(
        self,
        name: str | None = None,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        queue: str = "default",
        priority: Priority | int | str = Priority.NORMAL,
        executor: ExecutorKind | None = None,
        retryable: bool = True,
        breaker: bool = True,
        keep_result: float | None = None,
        rate_limit: str | None = None,
        max_concurrency: int | None = None,
    ) -> Callable[[Callable[Concatenate[P, Rest], R]], TaskHandle[P, Rest, R]]:
        """Register a handler as a task type (see Registry.task); return its typed handle,
        which still runs the handler when called (taskengine.handles). `rate_limit` ("100/s")
        and `max_concurrency` hold for the type across every instance (ADR 0038)."""
        limit = declared_limit(LimitScope.TYPE, name or "", rate_limit, max_concurrency)
        register = self.registry.task(
            name,
            timeout=timeout or self.settings.task_timeout,
            max_attempts=max_attempts or self.settings.max_attempts,
            queue=queue,
            priority=priority,
            executor=executor,
            retryable=retryable,
            breaker=breaker,
            keep_result=keep_result,
        )
        submitter = Submitter(self.submit_many, self.sync)

        def decorate(fn: Callable[Concatenate[P, Rest], R]) -> TaskHandle[P, Rest, R]:
            if isinstance(fn, TaskHandle):  # another app's handle: register its handler
                fn = fn.fn
            handle: TaskHandle[P, Rest, R] = TaskHandle(
                register(fn), task_name(fn, name), submitter
            )
            if not limit.empty:
                self._limits[(limit.scope, handle.name)] = msgspec.structs.replace(
                    limit, name=handle.name
                )
            return handle

        return decorate

    def queue_limit(
        self, queue: str, *, rate_limit: str | None = None, max_concurrency: int | None = None
    ) -> None:
        """Limit every task of `queue` across every instance: `rate_limit` ("100/s", "30/m")
        and `max_concurrency` (ADR 0038). Stored in the broker when an engine starts."""
        limit = declared_limit(LimitScope.QUEUE, queue, rate_limit, max_concurrency)
        self._limits[(limit.scope, queue)] = limit

    @property
    def limits(self) -> list[Limit]:
        """The limits declared in code, by (scope, name): an engine stores them at start."""
        return [self._limits[key] for key in sorted(self._limits)]

    def periodic(
        self,
        name: str,
        cron: str,
        type: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        queue: str | None = None,
    ) -> CronEntry:
        """Submit `type` with `payload` at every slot of `cron` (UTC), once across instances."""
        entry = CronEntry(
            name=name, cron=cron, type=type, payload=payload, priority=priority, queue=queue
        )
        check_unique([*self.periodic_tasks, entry])
        self.periodic_tasks.append(entry)
        return entry

    def build_periodic(self, entry: CronEntry, slot: float, key: str) -> Task:
        """The task of one slot: due at the slot, keyed by it."""
        request = TaskRequest(
            type=entry.type,
            payload=entry.payload,
            priority=entry.priority,
            queue=entry.queue,
            run_at=slot,
            idempotency_key=key,
        )
        return self.build(request)

    @property
    def broker(self) -> BrokerBackend:
        """The broker named by the settings (built on first use, started by `start`)."""
        if self._broker is None:
            self._broker = open_broker(
                self.settings.broker_url,
                max_depth=self.settings.max_depth,
                timeout=self.settings.broker_timeout,
            )
        return self._broker

    async def start(self) -> None:
        """Connect to the broker."""
        await self.broker.start()

    async def close(self) -> None:
        """Stop the worker built here, if any, and disconnect."""
        if self._engine is not None:
            await self._engine.stop()
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)
        if "io.http" in self.registry:  # the built-ins' shared HTTP client
            from taskengine.builtins import close_builtins

            await close_builtins(self.registry)
        if self._broker is not None:
            await self._broker.close()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- submitting -------------------------------------------------------------------------

    def build(
        self, request: TaskRequest, *, workflow: str | None = None, task_id: str | None = None
    ) -> Task:
        """Validate a request against the registry and return the Task to store (a node of
        `workflow`, when given, with the id `task_id`)."""
        spec = self.registry.get(request.type)
        payload = _checked_payload(request.payload)
        return self._build(spec, request, payload, workflow=workflow, task_id=task_id)

    def build_many(self, requests: Sequence[TaskRequest]) -> list[Task]:
        """`build` for a batch: the payloads are checked in one pass, and a request that
        takes every default of a type already built once here skips the checks it passed."""
        payloads = [request.payload for request in requests]
        try:
            payloads = from_json(to_json(payloads))
            check_storable(payloads)
        except ValidationError:
            return [self.build(request) for request in requests]  # raises, naming the value
        tasks: list[Task] = []
        checked: set[str] = set()  # types whose defaults made a valid task in this batch
        now = self.clock.now
        for request, payload in zip(requests, payloads, strict=True):
            spec = self.registry.get(request.type)
            if spec.name not in checked or not _takes_defaults(request):
                tasks.append(self._build(spec, request, payload))
                if _takes_defaults(request):
                    checked.add(spec.name)
                continue
            spec.check(payload)
            created = now()
            tasks.append(
                Task(
                    id=new_id(created),
                    type=spec.name,
                    payload=payload,
                    priority=spec.priority,
                    queue=spec.queue,
                    created_at=created,
                    run_at=created,
                    timeout=float(spec.timeout),
                    max_attempts=spec.max_attempts,
                    keep_result=spec.keep_result,
                )
            )
        return tasks

    def _build(
        self,
        spec: TaskSpec,
        request: TaskRequest,
        payload: Any,
        *,
        workflow: str | None = None,
        task_id: str | None = None,
    ) -> Task:
        if request.idempotency_key is not None and (
            found := find_unstorable(request.idempotency_key, "idempotency_key")
        ):
            raise ValidationError(found)
        spec.check(payload)
        return new_task(
            request.type,
            payload,
            now=self.clock.now(),
            priority=spec.priority if request.priority is None else request.priority,
            queue=request.queue or spec.queue,
            run_at=request.run_at,
            delay=request.delay,
            timeout=spec.timeout if request.timeout is None else request.timeout,
            max_attempts=spec.max_attempts
            if request.max_attempts is None
            else request.max_attempts,
            idempotency_key=request.idempotency_key,
            keep_result=spec.keep_result if request.keep_result is None else request.keep_result,
            depends_on=request.depends_on or (),
            on_parent_failure=request.on_parent_failure,
            workflow=workflow,
            task_id=task_id,
        )

    def check(self, request: TaskRequest) -> None:
        """Validate a request without storing it: an unknown type names the known ones."""
        if request.type not in self.registry:
            known = ", ".join(self.registry.names()) or "none"
            raise UnknownTaskType(f"unknown task type {request.type!r}; known types: {known}")
        self.build(request)

    async def submit(self, type: str, payload: Any = None, **options: Any) -> str:
        """Submit one task; return its id (the existing one for a repeated idempotency key)."""
        return (await self.submit_many([TaskRequest(type=type, payload=payload, **options)]))[0]

    async def submit_many(self, requests: Sequence[TaskRequest]) -> list[str]:
        """Submit a batch in one broker round trip; all are validated before any is stored."""
        locks = unique_locks(requests)
        results = await self.enqueue_tasks(self.build_many(requests), unique=locks)
        return [result.id for result in results]

    async def enqueue_tasks(
        self, tasks: Sequence[Task], unique: Sequence[UniqueLock | None] | None = None
    ) -> list[EnqueueResult]:
        """Store built tasks in one broker round trip and count them in the metrics; with
        tracing on, under a submit span whose context the tasks carry to their runs.

        A repeated idempotency key must come with the same request (type, payload, priority,
        queue, compared as canonical JSON), else IdempotencyConflict: within the batch it is
        raised before anything is stored; against a stored task, after the batch was stored
        (its other tasks stay stored, and a retry with the same keys finds them). `unique`,
        aligned with `tasks`, gives each one's unique lock (ADR 0038)."""
        check_batch(tasks)
        results = await self._enqueue(self.broker, tasks, unique)
        for task, result in zip(tasks, results, strict=True):
            if result.created:
                self.metrics.on_submitted(task.type)
        await self._check_repeats(tasks, results)
        return results

    async def _check_repeats(self, tasks: Sequence[Task], results: Sequence[EnqueueResult]) -> None:
        """IdempotencyConflict if a key that found a stored task came with another request."""
        repeats = [
            (index, task, result.id)
            for index, (task, result) in enumerate(zip(tasks, results, strict=True))
            if not result.created and task.idempotency_key is not None
        ]
        if not repeats:
            return
        records = await self.broker.get([task_id for _, _, task_id in repeats])
        for (index, task, task_id), record in zip(repeats, records, strict=True):
            if record is not None:  # purged since: nothing left to differ from
                where = f"tasks[{index}]: " if len(tasks) > 1 else ""
                check_repeat(task, record, task_id, where)

    async def _enqueue(
        self,
        broker: BrokerBackend,
        tasks: Sequence[Task],
        unique: Sequence[UniqueLock | None] | None = None,
    ) -> list[EnqueueResult]:
        tracer = self.tracing.tracer()
        if tracer is None:
            return await broker.enqueue(tasks, self.clock.now(), unique)
        with submitting(tracer, tasks) as (span, traced):
            results = await broker.enqueue(traced, self.clock.now(), unique)
            span.set_attribute("taskengine.submit.created", sum(r.created for r in results))
            return results

    def sync(self) -> SyncClient:
        """The blocking client for synchronous code: one connection, reused by every call."""
        with self._sync_lock:
            if self._sync is None:
                self._sync = SyncClient(self)
            return self._sync

    def twin(self) -> App:
        """An App sharing these settings, clock, task types and tracing, with a broker of its
        own (the sync client's, on its own event loop)."""
        twin = App(settings=self.settings, clock=self.clock)
        twin.registry = self.registry
        twin.tracing = self.tracing
        return twin

    def submit_sync(self, type: str, payload: Any = None, **options: Any) -> str:
        """Submit from synchronous code (no running event loop), over `sync()`'s connection."""
        return self.sync().submit(type, payload, **options)

    # -- inspecting and controlling ---------------------------------------------------------

    async def get(self, task_id: str) -> TaskRecord:
        """Return the task's record; raise TaskNotFound."""
        record = (await self.broker.get([task_id]))[0]
        if record is None:
            raise TaskNotFound(f"no task {task_id!r}")
        return record

    async def result(self, task_id: str, timeout: float | None = None) -> TaskResult:
        """Wait until the task is finished and return its last result; TimeoutError past it."""
        async with asyncio.timeout(timeout):
            delay = 0.005
            while True:
                record = await self.get(task_id)
                if record.state in TERMINAL_STATES:
                    return record.result or final_result(record)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)

    async def cancel(self, task_id: str) -> CancelResult:
        """Cancel a queued or running task (a running one stops at its worker)."""
        result = (await self.broker.cancel([task_id], self.clock.now()))[0]
        if result is CancelResult.REQUESTED and self._engine is not None:
            self._engine.pool.cancel_local(task_id)
        return result

    async def retry(self, task_id: str) -> ReplayResult:
        """Queue a dead or cancelled task again with a fresh attempt count."""
        return (await self.broker.replay([task_id], self.clock.now()))[0]

    # -- workflows (taskengine.workflows, ADR 0037) -------------------------------------------

    async def submit_workflow(self, flow: Step | Sequence[Node]) -> Workflow:
        """Submit a chain, group, chord or DAG (a list of nodes) in one enqueue batch, every
        task tagged with one new workflow id; return that id and each node's task id."""
        nodes = topological(nodes_of(flow))
        workflow_id = new_id(self.clock.now())
        ids: dict[str, str] = {}
        tasks: list[Task] = []
        for node in nodes:
            request = request_of(node.task)
            if request.idempotency_key is not None:
                raise InvalidWorkflow(
                    f"workflow node {node.name!r}: idempotency keys are not taken in a workflow"
                )
            if node.after:
                request = msgspec.structs.replace(
                    request,
                    depends_on=[*(request.depends_on or ()), *(ids[a] for a in node.after)],
                    on_parent_failure=node.on_parent_failure,
                )
            task = self.build(request, workflow=workflow_id)
            ids[node.name] = task.id
            tasks.append(task)
        await self.enqueue_tasks(tasks)
        return Workflow(workflow_id, ids)

    async def workflow(self, workflow_id: str) -> list[TaskRecord]:
        """Every task of a workflow, parents first; WorkflowNotFound if it has none."""
        records: list[TaskRecord] = []
        cursor: str | None = None
        wanted = TaskFilter(workflow=workflow_id)
        while True:
            page = await self.broker.list_tasks(wanted, WORKFLOW_PAGE, cursor)
            records += page.items
            if (cursor := page.next_cursor) is None:
                break
        if not records:
            raise WorkflowNotFound(f"no workflow {workflow_id!r}")
        return records_in_order(records)

    async def cancel_workflow(self, workflow_id: str) -> dict[str, CancelResult]:
        """Cancel every unfinished task of a workflow (running ones stop at their worker);
        each task's answer by id."""
        unfinished = [
            r.id for r in await self.workflow(workflow_id) if r.state not in TERMINAL_STATES
        ]
        answers = await self.broker.cancel(unfinished, self.clock.now()) if unfinished else []
        for task_id, answer in zip(unfinished, answers, strict=True):
            if answer is CancelResult.REQUESTED and self._engine is not None:
                self._engine.pool.cancel_local(task_id)
        return dict(zip(unfinished, answers, strict=True))

    async def replay_workflow(self, workflow_id: str) -> dict[str, ReplayResult]:
        """Replay every dead or cancelled task of a workflow, parents first, so a task its
        parent's failure cancelled waits for the replayed parent; each answer by id."""
        ended = [
            r.id
            for r in await self.workflow(workflow_id)
            if r.state in (TaskState.DEAD, TaskState.CANCELLED)
        ]
        answers = await self.inspector.replay(ended)
        return dict(zip(ended, answers, strict=True))

    def engine(self, **overrides: Any) -> Engine:
        """Build this app's engine: its worker pool and background services (start it with
        `await engine.start()`)."""
        settings = self.settings.with_changes(**overrides) if overrides else self.settings
        for entry in self.periodic_tasks:  # fail at start, not at the first slot
            self.build_periodic(entry, self.clock.now(), "check")
        self._engine = Engine(
            self.broker,
            self.registry,
            settings,
            clock=self.clock,
            metrics=self.metrics,
            periodic=self.periodic_tasks,
            build_periodic=self.build_periodic,
            tracing=self.tracing,
            limits=self.limits,
        )
        if settings.telemetry_publish or settings.metrics_port is not None:
            self._publish(self._engine, report=settings.telemetry_publish)
        return self._engine

    def _publish(self, engine: Engine, *, report: bool) -> None:
        """Have `engine` sample this process once a second and, with `report`, publish its
        telemetry with each heartbeat (ADR 0033)."""
        from taskengine import __version__
        from taskengine.telemetry.publisher import Publisher

        sampler = self.inspector.sampler(engine.status)
        publisher = Publisher(
            self.metrics,
            sampler,
            engine.status,
            every=engine.settings.heartbeat_every,
            version=__version__,
            started_at=self.clock.now(),
        )
        sampling = PeriodicService("sampler", 1.0, publisher.sample)
        engine.publish(publisher.report if report else None, sampling)
        sampler.expect_next_in(1.0)

    def worker(self, **overrides: Any) -> Engine:
        """Deprecated since 0.1: `engine()` under its old name; warns DeprecationWarning."""
        warnings.warn(
            "App.worker() is deprecated: use App.engine(), which builds the same engine",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.engine(**overrides)


def unique_locks(requests: Sequence[TaskRequest]) -> list[UniqueLock | None] | None:
    """Each request's unique lock (ADR 0038), aligned; None when no request asks for one."""
    if all(r.unique_for is None and r.unique_while is None for r in requests):
        if any(r.unique_key is not None for r in requests):
            raise ValidationError("unique_key needs unique_for or unique_while")
        return None
    return [
        unique_lock(
            r.type,
            r.payload,
            unique_for=r.unique_for,
            unique_while=r.unique_while,
            unique_key=r.unique_key,
        )
        for r in requests
    ]


def declared_limit(
    scope: LimitScope, name: str, rate_limit: str | None, max_concurrency: int | None
) -> Limit:
    """The limit a declaration in code asks for; ValidationError if a value is malformed."""
    rate = None if rate_limit is None else parse_rate(rate_limit)
    limit = Limit(scope=scope, name=name or "?", max_concurrency=max_concurrency, rate=rate)
    return check_limit_values(limit)


def _checked_payload(payload: Any) -> Any:
    """The payload as it will be stored (JSON only), within what every broker holds."""
    try:
        checked = from_json(to_json(payload))
        check_storable(checked)  # one answer for all brokers
    except ValidationError:
        found = find_unstorable(payload)
        if found is None:
            raise
        raise InvalidPayload(f"payload {found}") from None
    return checked


def _takes_defaults(request: TaskRequest) -> bool:
    """True if the request sets nothing but its type and payload."""
    return (
        request.priority is None
        and request.queue is None
        and request.delay is None
        and request.run_at is None
        and request.timeout is None
        and request.max_attempts is None
        and request.idempotency_key is None
        and request.keep_result is None
        and not request.depends_on
        and request.on_parent_failure == "cancel"
    )


def builtin_config(settings: Settings) -> BuiltinConfig:
    """The built-in task types' configuration; the engine's own store is off limits to them."""
    from taskengine.builtins.config import BuiltinConfig

    forbidden: set[str] = set()
    parts = urlsplit(settings.broker_url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        forbidden.add(str(Path(path).resolve()))
    return BuiltinConfig(
        data_dir=settings.data_dir,
        http_allow_private=settings.http_allow_private,
        sqlite_max_bytes=settings.max_result_bytes,
        forbidden_paths=frozenset(forbidden),
    )


def final_result(record: TaskRecord) -> TaskResult:
    """The result of a finished task that has none stored (cancelled while its lease lapsed)."""
    last = record.history[-1] if record.history else None
    return TaskResult(
        task_id=record.id,
        status=last.status if last else ResultStatus.CANCELLED,
        duration=last.duration if last else 0.0,
        worker_id=last.worker_id if last else None,
        completed_at=record.finished_at or record.updated_at,
        error=last.error if last else str(record.state),
        attempt=record.attempt,
    )
