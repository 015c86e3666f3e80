"""OpenTelemetry: a task's run is a child of the submit that queued it, on every broker.

Spans go to the SDK's in-memory exporter through a provider given to the App, so nothing here
touches the process-wide provider. The trace context crosses the broker in `Task.trace`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from msgspec.structs import replace
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskengine.app import TaskRequest
from taskengine.registry import TaskContext
from taskengine.testing import drain, running_worker
from taskengine.tracing import Tracing, traceparent
from tests.runtime.apps import BOARD, build_app, finished
from tests.runtime.conftest import MakeApp

SEEN: dict[str, int] = {}  # task id -> the span id current inside its handler
SEEN_LOCK = threading.Lock()


@pytest.fixture(autouse=True)
def _board() -> None:
    BOARD.reset()
    SEEN.clear()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def by_task(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str((span.attributes or {})["taskengine.task.id"]): span for span in spans}


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_a_run_is_a_child_of_the_submit_that_queued_it(
    app_on: MakeApp, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = await app_on(tracer_provider=provider)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /api/tasks") as request:
        first = await app.submit("add.async", {"a": 1, "b": 2})
    batch = await app.submit_many(
        [TaskRequest(type="add.async", payload={"a": 2, "b": i}) for i in range(3)]
    )
    stored = await app.get(first)
    assert stored.trace is not None and stored.trace.startswith("00-")

    await drain(app)
    await finished(app, [first, *batch])

    submits = named(exporter, "taskengine.submit")
    assert len(submits) == 2
    single, many = submits
    assert single.kind is SpanKind.PRODUCER
    assert parent_id(single) == request.get_span_context().span_id  # under the HTTP request
    assert single.attributes is not None
    assert single.attributes["taskengine.task.id"] == first
    assert single.attributes["taskengine.task.type"] == "add.async"
    assert single.attributes["taskengine.submit.created"] == 1
    assert many.attributes is not None and many.attributes["messaging.batch.message_count"] == 3
    assert stored.trace == traceparent(single.get_span_context())

    runs = by_task(named(exporter, "taskengine.run"))
    assert set(runs) == {first, *batch}
    assert parent_id(runs[first]) == span_id(single)
    assert runs[first].context is not None
    assert runs[first].context.trace_id == request.get_span_context().trace_id
    assert all(parent_id(runs[task_id]) == span_id(many) for task_id in batch)
    run = runs[first]
    assert run.kind is SpanKind.CONSUMER
    assert run.attributes is not None
    assert run.attributes["taskengine.task.queue"] == "default"
    assert run.attributes["taskengine.task.attempt"] == 1
    assert run.attributes["taskengine.outcome"] == "succeeded"
    done = await app.get(first)
    assert done.result is not None
    assert run.attributes["taskengine.worker.id"] == done.result.worker_id

    settles = named(exporter, "taskengine.settle")
    linked = {
        link.context.span_id: (link.attributes or {}).get("taskengine.outcome")
        for span in settles
        for link in span.links
    }
    assert {span_id(runs[t]) for t in runs} <= set(linked)
    assert set(linked.values()) == {"succeeded"}
    assert sum(int((s.attributes or {})["taskengine.settle.applied"]) for s in settles) == 4


async def test_a_failed_run_says_so_and_each_attempt_is_a_child_of_the_submit(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = build_app(tracer_provider=provider)
    task_id = await app.submit("fail.always", {}, max_attempts=2)
    async with running_worker(app):
        [record] = await finished(app, [task_id])

    [submit] = named(exporter, "taskengine.submit")
    runs = named(exporter, "taskengine.run")
    assert [(s.attributes or {})["taskengine.task.attempt"] for s in runs] == [1, 2]
    assert [(s.attributes or {})["taskengine.outcome"] for s in runs] == ["retry", "dead"]
    assert all(parent_id(run) == span_id(submit) for run in runs)
    assert all(run.status.status_code is StatusCode.ERROR for run in runs)
    assert record.result is not None and runs[-1].status.description == record.result.error


async def test_the_handler_runs_inside_its_run_span_in_a_thread_or_on_the_loop(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    def whoami(payload: object, ctx: TaskContext) -> None:
        with SEEN_LOCK:
            SEEN[ctx.task_id] = trace.get_current_span().get_span_context().span_id

    async def whoami_async(payload: object, ctx: TaskContext) -> None:
        whoami(payload, ctx)

    app = build_app(tracer_provider=provider)
    app.task("whoami.thread", executor="thread")(whoami)
    app.task("whoami.async")(whoami_async)
    ids = [await app.submit("whoami.thread"), await app.submit("whoami.async")]
    await drain(app)

    runs = by_task(named(exporter, "taskengine.run"))
    assert {task_id: span_id(runs[task_id]) for task_id in ids} == SEEN


async def test_a_task_submitted_without_tracing_runs_in_a_root_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    producer = build_app()
    task_id = await producer.submit("add.async", {"a": 1, "b": 1})
    assert (await producer.get(task_id)).trace is None
    traced = build_app(tracer_provider=provider)
    traced._broker = producer.broker  # one memory store, two apps
    await drain(traced)

    [run] = named(exporter, "taskengine.run")
    assert run.parent is None
    assert named(exporter, "taskengine.submit") == []


async def test_without_an_sdk_provider_nothing_is_traced_or_carried() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # no SDK set
    app = build_app()
    assert app.tracing.tracer() is None
    task_id = await app.submit("add.async", {"a": 1, "b": 1})
    assert (await app.get(task_id)).trace is None
    async with running_worker(app) as worker:
        assert worker.runner.tracing is None and worker.completer.tracing is None
        await worker.run_until_idle(10)
    await finished(app, [task_id])


def test_the_global_provider_is_found_once_an_sdk_sets_it() -> None:
    installed = TracerProvider()
    tracing = Tracing()
    assert tracing.tracer() is None
    real = trace.get_tracer_provider
    trace.get_tracer_provider = lambda: installed  # type: ignore[assignment]
    try:
        assert tracing.tracer() is not None
    finally:
        trace.get_tracer_provider = real  # type: ignore[assignment]
    assert tracing.tracer() is None


async def test_a_malformed_carried_context_gives_a_root_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = build_app(tracer_provider=provider)
    task = app.build(TaskRequest(type="add.async", payload={"a": 1, "b": 1}))
    await app.broker.enqueue([replace(task, trace="00-not-a-trace-01")], app.clock.now())
    await drain(app)
    [run] = named(exporter, "taskengine.run")
    assert run.parent is None


NO_OTEL = """
import asyncio, sys
{block}
from taskengine.testing import memory_app, running_worker
import taskengine.api

async def main():
    app = memory_app(builtins=False)
    app.task("echo")(lambda payload: payload)
    async with running_worker(app):
        task_id = await app.submit("echo", 1)
        assert (await app.result(task_id, timeout=10)).data == 1
    assert (await app.get(task_id)).trace is None

asyncio.run(main())
print(sorted(n for n, m in sys.modules.items() if m and n.startswith("opentelemetry")))
"""


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "not-installed"])
def test_nothing_of_opentelemetry_is_loaded_unless_the_application_does(installed: bool) -> None:
    block = "" if installed else "sys.modules['opentelemetry'] = None  # as if not installed"
    done = subprocess.run(
        [sys.executable, "-c", NO_OTEL.format(block=block)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_submit_sync_is_traced_too(
    tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = build_app(url=f"sqlite:///{tmp_path / 'sync.db'}", tracer_provider=provider)
    task_id = app.submit_sync("add.async", {"a": 1, "b": 2})

    [submit] = named(exporter, "taskengine.submit")
    assert (submit.attributes or {})["taskengine.task.id"] == task_id

    async def stored_trace() -> str | None:
        async with app:
            return (await app.get(task_id)).trace

    assert asyncio.run(stored_trace()) == traceparent(submit.get_span_context())
