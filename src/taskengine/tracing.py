"""OpenTelemetry spans for submit, run and settle; the trace context crosses the broker in the task.

Optional (`pip install 'task-engine[otel]'`). A submit span's W3C `traceparent` is stored in
`Task.trace`; the worker's run span takes it as its parent, so a task's run is a child of the
request that submitted it. A settle span covers one batch and links to the run spans in it
(ADR 0019). Tracing is off while no SDK TracerProvider is set (the global one, or one given to
`App`): nothing here imports opentelemetry unless the application already did, a submit then
costs one dictionary lookup and a run one `None` check. A worker decides when it starts.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from msgspec.structs import replace

from taskengine.model import Outcome, OutcomeKind, Task, TaskRecord

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

SCOPE = "taskengine"
SYSTEM = "taskengine"
# Outcomes whose run failed; their run span gets an error status.
FAILED = frozenset({OutcomeKind.RETRY, OutcomeKind.DEAD})


class Tracing:
    """Finds the tracer to use: the given provider's, or the global one once an SDK set it."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._seen: object = None
        self._tracer: Tracer | None = None

    def tracer(self) -> Tracer | None:
        """The tracer, or None while tracing is off (no opentelemetry, no SDK provider)."""
        if self._provider is None and "opentelemetry.trace" not in sys.modules:
            return None  # nothing imported opentelemetry, so nothing set a provider: no cost
        from opentelemetry import trace

        provider = self._provider or trace.get_tracer_provider()
        if provider is not self._seen:  # one check per call: the global provider may be set late
            self._seen = provider
            off = isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
            self._tracer = None if off else provider.get_tracer(SCOPE)
        return self._tracer

    def for_worker(self) -> WorkerTracing | None:
        """What one worker traces with, decided now (None: off for its whole life)."""
        tracer = self.tracer()
        return None if tracer is None else WorkerTracing(tracer)


class WorkerTracing:
    """A worker's tracer and the run spans its next settle batches link to, by task id."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.runs: dict[str, SpanContext] = {}


def traceparent(context: SpanContext) -> str:
    """The W3C traceparent header value of a span context."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _task_attributes(task: Task) -> dict[str, str | int]:
    return {
        "messaging.system": SYSTEM,
        "messaging.message.id": task.id,
        "messaging.destination.name": task.queue,
        "taskengine.task.id": task.id,
        "taskengine.task.type": task.type,
        "taskengine.task.queue": task.queue,
        "taskengine.task.priority": task.priority.name,
        "taskengine.task.attempt": task.attempt,
    }


@contextmanager
def submitting(tracer: Tracer, tasks: Sequence[Task]) -> Iterator[tuple[Span, list[Task]]]:
    """A submit span (child of the current context, e.g. an HTTP request's) and the tasks
    carrying it as their trace context; one task's attributes go on the span itself."""
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.batch.message_count": len(tasks),
    }
    if len(tasks) == 1:
        attributes.update(_task_attributes(tasks[0]))
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        "taskengine.submit", kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        parent = traceparent(span.get_span_context())
        yield span, [replace(task, trace=parent) for task in tasks]


@contextmanager
def running(tracing: WorkerTracing, record: TaskRecord, worker_id: str) -> Iterator[Span]:
    """The run span of one attempt, a child of the context the task carries (if any)."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = None
    if record.trace is not None:  # a malformed one gives an empty context: a root span
        parent = TraceContextTextMapPropagator().extract({"traceparent": record.trace})
    attributes = _task_attributes(record)
    attributes["messaging.operation.type"] = "process"
    attributes["taskengine.worker.id"] = worker_id
    with tracing.tracer.start_as_current_span(
        "taskengine.run",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=True,
    ) as span:
        yield span


def ran(tracing: WorkerTracing, span: Span, record: TaskRecord, outcome: Outcome | None) -> None:
    """Put the outcome on the run span, and keep the span for the settle that will link it."""
    if outcome is None:
        span.set_attribute("taskengine.outcome", "lease_lost")
        return
    span.set_attribute("taskengine.outcome", outcome.kind.value)
    if outcome.kind in FAILED:
        from opentelemetry.trace import Status, StatusCode

        error = outcome.result.error if outcome.result is not None else None
        span.set_status(Status(StatusCode.ERROR, error))
    tracing.runs[record.id] = span.get_span_context()


@contextmanager
def settling(tracing: WorkerTracing, batch: Sequence[Outcome]) -> Iterator[Span]:
    """The settle span of one batch, linked to the run span of each task in it."""
    from opentelemetry.trace import Link, SpanKind

    links = [
        Link(
            context,
            {"taskengine.task.id": outcome.task_id, "taskengine.outcome": outcome.kind.value},
        )
        for outcome in batch
        if (context := tracing.runs.get(outcome.task_id)) is not None
    ]
    with tracing.tracer.start_as_current_span(
        "taskengine.settle",
        kind=SpanKind.CLIENT,
        links=links,
        attributes={"messaging.system": SYSTEM, "messaging.batch.message_count": len(batch)},
        record_exception=True,
    ) as span:
        yield span


def settled(tracing: WorkerTracing, span: Span, batch: Sequence[Outcome], applied: int) -> None:
    """Count what the broker applied on the settle span; forget the batch's run spans."""
    span.set_attribute("taskengine.settle.applied", applied)
    span.set_attribute("taskengine.settle.refused", len(batch) - applied)
    for outcome in batch:
        tracing.runs.pop(outcome.task_id, None)
